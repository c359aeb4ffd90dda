"""Races between endings: stops that collide, and stops that arrive while a job starts."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import psutil

from tests.helpers.procs import alive, proc_key

STARTS = 20


async def test_ten_simultaneous_stops_end_the_job_once(start_server, tone, record):
    server = start_server(fake=["--lines", "100000", "--interval", "0.05", "--grandchildren", "1"])
    job = await asyncio.to_thread(server.upload, tone, on_disconnect="keep")
    running = await asyncio.to_thread(server.wait_running, job["id"])
    leader = proc_key(psutil.Process(running["process_id"]))
    async with aiohttp.ClientSession() as session:

        async def stop() -> tuple[int, dict]:
            async with session.post(f"{server.url}/api/jobs/{job['id']}/stop") as response:
                return response.status, await response.json()

        results = await asyncio.gather(*(stop() for _ in range(10)))
    statuses = sorted(status for status, _ in results)
    # Each either saw the stop through (200, cancelled) or came after it ended (409).
    assert set(statuses) <= {200, 409}, results
    assert 200 in statuses
    for status, body in results:
        if status == 200:
            assert body["status"] == "cancelled" and body["cancel_reason"] == "stopped by user", body
        else:
            assert "already ended" in body["error"], body
    final = server.job(job["id"])
    assert final["status"] == "cancelled" and final["exit_code"] is not None, final
    assert not alive(leader)
    record(answers={str(s): statuses.count(s) for s in set(statuses)})


def test_stop_while_starting_leaves_no_process(start_server, tone, record):
    """Stop right after the upload, while the job is queued or its process is starting."""
    server = start_server(
        "--max-concurrent-jobs", "1", fake=["--lines", "100000", "--interval", "0.05", "--grandchildren", "1"]
    )
    outcomes: dict[str, int] = {}
    # Queued behind a running job: stopped before any process exists.
    blocker = server.upload(tone, on_disconnect="keep")
    server.wait_running(blocker["id"])
    queued = [server.upload(tone, on_disconnect="keep") for _ in range(5)]
    for job in queued:
        assert server.stop_job(job["id"]).status == 200
    assert server.stop_job(blocker["id"]).status == 200
    for job in queued:
        final = server.job(job["id"])
        assert final["status"] == "cancelled" and final["process_id"] is None, final
    outcomes["queued, never started"] = len(queued)
    assert server.wait_for_no_descendants(5), server.descendants()
    for i in range(STARTS):
        job = server.upload(tone, on_disconnect="keep")
        if i % 2:
            time.sleep(0.01 * (i % 7))  # land at different points of the start
        response = server.stop_job(job["id"])
        assert response.status in (200, 409), response.body
        final = server.wait_final(job["id"], timeout=10)
        assert final["status"] == "cancelled", final
        assert final["cancel_reason"] in ("stopped by user", "cancelled before start"), final
        key = f"{final['cancel_reason']}, process {'started' if final['process_id'] else 'never started'}"
        outcomes[key] = outcomes.get(key, 0) + 1
        # The server's own check: nothing of this job is left under it.
        assert server.wait_for_no_descendants(5), server.descendants()
    record(starts=STARTS, outcomes=outcomes)
