"""Many writers at once never see "database is locked"."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from server.store import Store
from tests.helpers.store_rows import job_args


async def test_concurrent_creates_heartbeats_and_a_second_store(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    first = await Store.open(path)
    second = await Store.open(path)
    try:
        seed = [await first.create_job(**job_args()) for _ in range(5)]
        for job in seed:
            assert await first.register_process(
                job["id"], pid=1, pgid=1, start_ticks=1, boot_id="b", instance_id="i",
                log_file_path="/l",
            )  # fmt: skip
        seed_ids = [j["id"] for j in seed]

        async def heartbeats(store: Store) -> None:
            for _ in range(50):
                await store.update_heartbeats(seed_ids)
                await store.record_metrics_many([(i, 1.0, 2.0, 1) for i in seed_ids])

        results = await asyncio.gather(
            *(first.create_job(**job_args(filename=f"a{i}.wav")) for i in range(50)),
            *(second.create_job(**job_args(filename=f"b{i}.wav")) for i in range(50)),
            heartbeats(first),
            heartbeats(second),
        )
        created = [r for r in results if r is not None]
        assert len(created) == 100
        ids = {j["id"] for j in created}
        assert len(ids) == 100
        everything = await first.list_jobs(limit=1000)
        assert {j["id"] for j in everything} == ids | set(seed_ids)
        assert {j["filename"] for j in everything} >= {f"a{i}.wav" for i in range(50)} | {
            f"b{i}.wav" for i in range(50)
        }
        assert len(await second.get_metrics(seed_ids[0], limit=1000)) == 100
    finally:
        await second.close()
        await first.close()


OTHER_PROCESS = """
import asyncio, sys
from server.store import Store
async def main():
    store = await Store.open(sys.argv[1])
    try:
        for i in range(50):
            await store.create_job(
                filename=f"cli{i}.wav", original_path="/p", duration_seconds=None,
                model="tiny.en", language="en", processes=1, threads=1,
                chunk_seconds=30.0, overlap_seconds=1.0,
            )
    finally:
        await store.close()
asyncio.run(main())
"""


async def test_another_process_writing_at_the_same_time(tmp_path: Path) -> None:
    """The `transcriptor` CLI may write to the same file while the server runs."""
    repo = Path(__file__).resolve().parents[2]
    path = tmp_path / "t.db"
    store = await Store.open(path)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", OTHER_PROCESS, str(path),
            cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)},
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        mine = []
        for i in range(50):
            job = await store.create_job(**job_args(filename=f"srv{i}.wav"))
            mine.append(job["id"])
            await store.update_heartbeats(mine)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        names = {j["filename"] for j in await store.list_jobs(limit=1000)}
        assert names == {f"srv{i}.wav" for i in range(50)} | {f"cli{i}.wav" for i in range(50)}
    finally:
        await store.close()
