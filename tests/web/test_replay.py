"""Replaying a finished job from its log file: numbers, the cap, and what it costs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.app import create_app
from server.jobs.joblog import index_path
from tests.helpers.app_api import upload, wait_status
from tests.helpers.wsclient import collect_until, is_final_status

FINAL = {"completed", "failed", "cancelled"}


async def replay(client: Any, job_id: int, since: int) -> list[dict[str, Any]]:
    """Everything a subscribe to a finished job answers: a ping after it marks the end
    (the replies to one socket are queued in order)."""
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job_id, "since": since})
        await ws.send_json({"type": "ping"})
        seen = await collect_until(ws, lambda m: m["type"] == "pong")
    return [m for m in seen if m["type"] in ("log", "gap")]


def read_bytes_so_far() -> int:
    """Bytes this process (the server under test runs in it) has read through read(2)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


async def test_since_across_the_log_cap(aiohttp_client, make_config, tone):
    config = make_config("--lines", "400", "--interval", "0", log_cap_mb=0.005)
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"], "since": 0})
        seen = await collect_until(ws, is_final_status)
    live = {m["seq"]: m["line"] for m in seen if m["type"] == "log"}
    last = max(live)
    assert sorted(live) == list(range(1, last + 1)), "live lines are numbered 1..N"

    everything = await replay(client, job["id"], 0)
    lines = [m for m in everything if m["type"] == "log"]
    kept = len(lines)
    assert 0 < kept < last, "the cap should keep only the first lines in the file"
    # The file's lines keep the numbers they streamed with; the cap marker takes none.
    assert [(m["seq"], m["line"]) for m in lines] == [(s, live[s]) for s in range(1, kept + 1)]
    assert everything[-1] == {"type": "gap", "job": job["id"], "missed": last - kept, "next_seq": last + 1}

    assert await replay(client, job["id"], kept + 5) == [
        {"type": "gap", "job": job["id"], "missed": last - kept - 5, "next_seq": last + 1}
    ]
    tail = await replay(client, job["id"], kept - 3)
    assert [m.get("seq") for m in tail] == [kept - 2, kept - 1, kept, None]
    assert tail[-1]["missed"] == last - kept
    assert await replay(client, job["id"], last) == []


async def test_finished_replay_does_not_read_the_whole_log(aiohttp_client, make_config, tone):
    config = make_config("--flood-bytes", "20000000", "--lines", "3", "--interval", "0")
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    final = await wait_status(client, job["id"], FINAL, timeout=120)
    assert final["status"] == "completed"
    log_path = Path(final["log_file_path"])
    assert log_path.stat().st_size > 20_000_000
    index = json.loads(index_path(log_path).read_text())

    before = read_bytes_so_far()
    messages = await replay(client, job["id"], 0)
    read = read_bytes_so_far() - before
    assert read < 4_000_000, f"a replay read {read} bytes of a 20 MB log"
    lines = [m for m in messages if m["type"] == "log"]
    assert lines[-1] == {"type": "log", "job": job["id"], "seq": index["lines"], "line": "done"}
    assert messages[0]["type"] == "gap" and messages[0]["next_seq"] == lines[0]["seq"]
