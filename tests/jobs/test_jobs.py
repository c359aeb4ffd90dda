"""Jobs through the real app: upload, live lines, stop, auto-kill on disconnect."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import psutil
import pytest

from server import keys
from server.app import create_app
from tests.helpers.app_api import upload, wait_for_line, wait_status
from tests.helpers.health import health_until
from tests.helpers.procs import alive_in_group, is_alive, wait_until
from tests.helpers.wsclient import collect_until, is_final_status, messages, stalled_socket


def pipe_fds() -> int:
    """Pipes this process (the app under test runs in it) holds open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
    return count


async def test_fake_job_streams_lines_and_completes(aiohttp_client, make_config, tone):
    client = await aiohttp_client(create_app(make_config("--lines", "20")))
    response = await upload(client, tone)
    assert response.status == 201, await response.text()
    job = await response.json()
    assert job["status"] == "queued" and job["filename"] == "tone.wav"
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        seen = await collect_until(ws, is_final_status)
    logs = [m for m in seen if m["type"] == "log"]
    assert [m["seq"] for m in logs] == list(range(1, len(logs) + 1))
    assert any("line 20 of 20" in m["line"] for m in logs)
    assert seen[-1]["status"] == "completed"
    assert any(m["type"] == "segment" for m in seen)
    assert any(m["type"] == "progress" and m["progress"] == 1.0 for m in seen)
    final = await (await client.get(f"/api/jobs/{job['id']}")).json()
    assert final["exit_code"] == 0 and final["progress"] == 1.0
    text = await (await client.get(f"/api/jobs/{job['id']}/transcript.txt")).text()
    assert "segment 1" in text
    log = await (await client.get(f"/api/jobs/{job['id']}/logs?lines=3")).json()
    assert log["lines"][-1] == "done"
    assert Path(final["log_file_path"]).read_text().count("\n") == len(logs)


async def test_reconnect_with_since_has_no_gap(aiohttp_client, make_config, tone):
    config = make_config("--lines", "60", "--interval", "0.05", disconnect_grace=2.0)
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone)).json()
    got: list[int] = []
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        await collect_until(ws, lambda m: m["type"] == "log" and m["seq"] >= 10)
    # the first socket only saw part; resume where we left off
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"], "since": 0})
        first = await collect_until(ws, lambda m: m["type"] == "log" and m["seq"] >= 15)
        got = [m["seq"] for m in first if m["type"] == "log"]
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"], "since": got[-1]})
        rest = await collect_until(ws, is_final_status)
    got += [m["seq"] for m in rest if m["type"] == "log"]
    assert got == list(range(1, len(got) + 1))
    assert rest[-1]["status"] == "completed", rest[-1]


async def test_last_client_leaving_cancels_and_kills_group(aiohttp_client, make_config, tone):
    config = make_config("--lines", "10000", "--interval", "0.05", "--grandchildren", "2")
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone)).json()
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        await collect_until(ws, lambda m: m["type"] == "log" and "helper processes" in m["line"])
        running = await (await client.get(f"/api/jobs/{job['id']}")).json()
        pgid = running["process_group_id"]
        assert len(alive_in_group(pgid)) == 3
    loop = asyncio.get_running_loop()
    left = loop.time()
    final = await wait_status(client, job["id"], {"cancelled", "failed", "completed"}, timeout=10)
    assert final["status"] == "cancelled"
    assert final["cancel_reason"] == "all clients disconnected"
    assert loop.time() - left < config.disconnect_grace + 2
    assert alive_in_group(pgid) == []


async def test_return_within_grace_keeps_job(aiohttp_client, make_config, tone):
    config = make_config("--lines", "40", "--interval", "0.05", disconnect_grace=1.5)
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone)).json()
    seqs: list[int] = []
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        seen = await collect_until(ws, lambda m: m["type"] == "log" and m["seq"] >= 5)
        seqs = [m["seq"] for m in seen if m["type"] == "log"]
    # A page reload: back once the server saw the page go and started its grace.
    await health_until(client, lambda body: body["disconnect_timers"] == 1)
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"], "since": seqs[-1]})
        rest = await collect_until(ws, is_final_status)
    seqs += [m["seq"] for m in rest if m["type"] == "log"]
    assert rest[-1]["status"] == "completed"
    assert seqs == list(range(1, len(seqs) + 1))


async def test_keep_job_survives_disconnect(aiohttp_client, make_config, tone):
    client = await aiohttp_client(create_app(make_config("--lines", "30", "--interval", "0.05")))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        await collect_until(ws, lambda m: m["type"] == "log")
    final = await wait_status(client, job["id"], {"completed", "cancelled", "failed"})
    assert final["status"] == "completed"


async def test_stop_kills_group(aiohttp_client, make_config, tone):
    config = make_config("--lines", "10000", "--interval", "0.05", "--grandchildren", "1")
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    running = await wait_status(client, job["id"], {"running"})
    await wait_for_line(client, job["id"])  # the first line follows the grandchild's start
    response = await client.post(f"/api/jobs/{job['id']}/stop")
    assert response.status == 200
    stopped = await response.json()
    assert stopped["status"] == "cancelled" and stopped["cancel_reason"] == "stopped by user"
    assert alive_in_group(running["process_group_id"]) == []
    again = await client.post(f"/api/jobs/{job['id']}/stop")
    assert again.status == 409
    assert "already ended" in (await again.json())["error"]


async def test_stop_of_child_ignoring_sigterm(aiohttp_client, make_config, tone):
    config = make_config("--lines", "10000", "--interval", "0.05", "--ignore-term", kill_grace=0.5)
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    running = await wait_status(client, job["id"], {"running"})
    await wait_for_line(client, job["id"])  # the fake ignores SIGTERM from its first line on
    loop = asyncio.get_running_loop()
    started = loop.time()
    stopped = await (await client.post(f"/api/jobs/{job['id']}/stop")).json()
    assert stopped["status"] == "cancelled"
    assert stopped["exit_code"] == -9  # SIGKILL after the grace
    assert loop.time() - started < config.kill_grace + 1
    assert alive_in_group(running["process_group_id"]) == []


@pytest.mark.parametrize("leftover", ["--grandchildren", "--setsid-grandchild"])
async def test_program_exit_ends_job_though_a_leftover_holds_its_output(
    aiohttp_client, make_config, tone, leftover
):
    # The fake exits 0 after its lines, leaving a sleeping helper that inherited stdout.
    flags = ("--lines", "3", leftover, *(["1"] if leftover == "--grandchildren" else []))
    client = await aiohttp_client(create_app(make_config(*flags, kill_grace=0.5)))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    final = await wait_status(client, job["id"], {"completed", "failed", "cancelled"}, timeout=15)
    assert final["status"] == "completed" and final["exit_code"] == 0
    lines = (await (await client.get(f"/api/jobs/{job['id']}/logs?lines=20")).json())["lines"]
    assert any("still hold its output open; stopping them" in line for line in lines), lines
    [started] = [line for line in lines if line.startswith("started 1 helper")]
    helper = int(started.rsplit("[", 1)[1].rstrip("]"))
    assert await asyncio.to_thread(wait_until, lambda: not is_alive(helper), 5)
    assert alive_in_group(final["process_group_id"]) == []


async def test_program_exit_ends_job_though_an_unfindable_process_holds_its_output(
    aiohttp_client, make_config, tone
):
    # The helper sheds the job's marker and group, so the server cannot prove it is the
    # job's and must not signal it; the job still ends, and the test cleans up after it.
    client = await aiohttp_client(create_app(make_config("--lines", "2", "--unmarked-escapee")))
    pipes_before = pipe_fds()
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    await wait_status(client, job["id"], {"running"})
    helper = None
    try:
        async with asyncio.timeout(5):
            while helper is None:
                lines = (await (await client.get(f"/api/jobs/{job['id']}/logs?lines=20")).json())["lines"]
                started = [line for line in lines if line.startswith("started 1 helper")]
                helper = int(started[0].rsplit("[", 1)[1].rstrip("]")) if started else None
                await asyncio.sleep(0.05)
        helper_proc = psutil.Process(helper)
        final = await wait_status(client, job["id"], {"completed", "failed", "cancelled"}, timeout=25)
        assert final["status"] == "completed" and final["exit_code"] == 0
        assert helper_proc.is_running(), "an unverified process must never be signalled"
        # ...and the server let go of the pipe the helper still holds.
        async with asyncio.timeout(3):
            while pipe_fds() > pipes_before:
                await asyncio.sleep(0.05)
    finally:
        if helper is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(helper)
                if "time.sleep(60)" in " ".join(proc.cmdline()):  # the helper this test made
                    proc.kill()


async def test_queue_and_cancel_queued_job(aiohttp_client, make_config, tone):
    config = make_config("--lines", "10000", "--interval", "0.05", max_concurrent_jobs=1)
    client = await aiohttp_client(create_app(config))
    first = await (await upload(client, tone, on_disconnect="keep")).json()
    second = await (await upload(client, tone)).json()
    await wait_status(client, first["id"], {"running"})
    queued = await (await client.get(f"/api/jobs/{second['id']}")).json()
    assert queued["status"] == "queued" and queued["queue_position"] == 1
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": second["id"]})
        await messages(ws)
    abandoned = await wait_status(client, second["id"], {"cancelled"}, timeout=5)
    assert abandoned["cancel_reason"] == "all clients disconnected"
    await client.post(f"/api/jobs/{first['id']}/stop")


async def test_failing_job_records_reason(aiohttp_client, make_config, tone):
    config = make_config("--lines", "2", "--exit-code", "3", "--fail-message", "model exploded")
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone)).json()
    final = await wait_status(client, job["id"], {"failed", "completed"})
    assert final["status"] == "failed" and final["exit_code"] == 3
    assert final["error_message"] == "exit code 3: error: model exploded"


async def test_missing_executable_fails_clearly(aiohttp_client, make_config, tone, tmp_path):
    config = make_config(pipeline_command=(str(tmp_path / "no-such-program"),))
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone)).json()
    final = await wait_status(client, job["id"], {"failed", "completed"})
    assert final["status"] == "failed"
    assert final["error_message"].startswith("failed to start:")


async def test_two_jobs_five_subscribers_each_get_every_line(aiohttp_client, make_config, tone):
    config = make_config("--lines", "300", "--interval", "0.002", disconnect_grace=5)
    client = await aiohttp_client(create_app(config))
    jobs = [await (await upload(client, tone)).json() for _ in range(2)]

    async def follow(job_id: int) -> list[int]:
        async with client.ws_connect("/ws") as ws:
            await ws.send_json({"type": "subscribe", "job": job_id})
            seen = await collect_until(ws, is_final_status, timeout=30)
        return [m["seq"] for m in seen if m["type"] == "log"]

    results = await asyncio.gather(*(follow(j["id"]) for j in jobs for _ in range(5)))
    for seqs in results:
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) >= 300


async def test_stalled_subscriber_does_not_slow_others(aiohttp_client, make_config, tone, tmp_path):
    # The reading client shares this event loop with the server, so under a flood it can
    # itself fall behind and be sent a `gap` (seen here even with no stalled client at all).
    # What the server promises is that a stalled client never holds the others back, and
    # that every line reaches a reader either in order or counted in a gap; not that a
    # reader as slow as the producer loses nothing.
    gate = tmp_path / "gate"
    config = make_config("--lines", "20000", "--interval", "0", "--gate", str(gate), disconnect_grace=5)
    app = create_app(config)
    client = await aiohttp_client(app)
    job = await (await upload(client, tone)).json()
    stalled = await stalled_socket(client.host, client.port, {"type": "subscribe", "job": job["id"]})
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        channels = app[keys.CHANNELS]
        async with asyncio.timeout(20):
            while channels.subscriber_count(job["id"]) < 2:
                await asyncio.sleep(0.01)
        gate.touch()
        seen = await collect_until(ws, is_final_status, timeout=120)
        channel = app[keys.CHANNELS].find(job["id"])
        assert channel is not None
        assert channels.subscriber_count(job["id"]) == 2  # the stalled socket never left
    expected = 1
    for message in seen:
        if message["type"] == "gap":
            assert message["next_seq"] == expected + message["missed"]
            expected = message["next_seq"]
        elif message["type"] == "log":
            assert message["seq"] == expected
            expected += 1
    assert expected - 1 == channel.seq >= 20000
    assert seen[-1]["status"] == "completed"
    stalled.transport.abort()  # it never reads, so a close would wait on its unsent frames
    await stalled.wait_closed()


async def test_real_pipeline_end_to_end(aiohttp_client, make_config):
    from tests.helpers.audio import SPEECH_CLIP

    config = make_config(pipeline_command=(), default_threads=2)
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, SPEECH_CLIP)).json()
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        seen = await collect_until(ws, is_final_status, timeout=120)
    assert seen[-1]["status"] == "completed", seen[-10:]
    assert any(m["type"] == "segment" for m in seen)
    text = await (await client.get(f"/api/jobs/{job['id']}/transcript.txt")).text()
    for word in ("quick", "brown", "fox", "kitchen", "table"):
        assert word in text.lower()
    for kind in ("srt", "vtt", "json"):
        assert (await client.get(f"/api/jobs/{job['id']}/transcript.{kind}")).status == 200


test_real_pipeline_end_to_end = pytest.mark.slow(test_real_pipeline_end_to_end)
