"""Misbehaving pipelines, one fake for each: the server stays in charge of every one."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from tests.helpers.fake import helper_pids
from tests.helpers.procs import alive, proc_key
from tests.helpers.raw_ws import raw_ws_open, ws_text_frame
from tests.helpers.server_proc import ServerProcess
from tests.helpers.waiting import wait_for

KILL_GRACE = 1.0  # what conftest's servers run with
# The full 1 GB: about 85 s on 2 cores (12 MB/s of 100-byte lines); it took
# 4 minutes before read_lines and the log encoding were made cheaper.
FLOOD_BYTES = 1_000_000_000


def group_keys(server: ServerProcess, job_id: int, extra: int = 0) -> list[tuple[int, float]]:
    """(pid, create_time) of the job's leader, its descendants and the helpers it announced."""
    job = server.job(job_id)
    leader = psutil.Process(job["process_id"])
    assert server.is_descendant(leader.pid)
    procs = [leader, *leader.children(recursive=True)]
    keys = {proc_key(p) for p in procs}
    for pid in helper_pids(server.log_lines(job_id, 20)):
        assert server.is_descendant(pid), f"helper {pid} is not under the server"
        keys.add(proc_key(psutil.Process(pid)))
    assert len(keys) >= 1 + extra, keys
    return sorted(keys)


def wait_helpers(server: ServerProcess, job_id: int, count: int) -> list[int]:
    def announced() -> list[int] | None:
        pids = helper_pids(server.log_lines(job_id, 20))
        return pids if len(pids) >= count else None

    return list(wait_for(announced, 15, f"job {job_id} to announce {count} helpers"))


class Pinger:
    """Hits /api/health every 20 ms from a thread and keeps the slowest answer."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Pinger:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                status = self.server.request("GET", "/api/health", timeout=5).status
                if status != 200:
                    self.failures.append(f"status {status}")
            except OSError as error:
                self.failures.append(repr(error))
            self.latencies.append(time.monotonic() - began)
            self._stop.wait(0.02)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)


def test_stop_ends_a_child_that_ignores_sigterm_within_grace(start_server, tone, record):
    # Without resuming, a shutdown cancels the job (with it, it would be queued again).
    server = start_server(
        "--no-resume-interrupted",
        fake=["--lines", "100000", "--interval", "0.05", "--ignore-term", "--grandchildren", "2"],
    )
    job = server.upload(tone, on_disconnect="keep")
    server.wait_running(job["id"])
    wait_helpers(server, job["id"], 2)
    keys = group_keys(server, job["id"], extra=2)
    began = time.monotonic()
    response = server.stop_job(job["id"])
    took = time.monotonic() - began
    assert response.status == 200, response.body
    stopped = response.json()
    assert stopped["status"] == "cancelled" and stopped["cancel_reason"] == "stopped by user"
    assert stopped["exit_code"] == -9, stopped  # SIGTERM was ignored; SIGKILL ended it
    assert took < KILL_GRACE + 1, took
    assert [k for k in keys if alive(k)] == []
    # The same child at shutdown: SIGTERM to the server still ends within its deadline.
    second = server.upload(tone, on_disconnect="keep")
    server.wait_running(second["id"])
    wait_helpers(server, second["id"], 2)
    second_keys = group_keys(server, second["id"], extra=2)
    shutdown = server.stop()
    assert [k for k in second_keys if alive(k)] == []
    server.start()
    settled = server.job(second["id"])
    assert settled["status"] == "cancelled" and settled["cancel_reason"] == "server shutdown", settled
    record(stop_seconds=round(took, 2), shutdown_seconds=round(shutdown, 2))


def test_setsid_grandchild_does_not_survive_a_stop(start_server, tone, record):
    server = start_server(
        fake=["--lines", "100000", "--interval", "0.05", "--setsid-grandchild", "--grandchildren", "1"]
    )
    job = server.upload(tone, on_disconnect="keep")
    server.wait_running(job["id"])
    pids = wait_helpers(server, job["id"], 2)
    keys = group_keys(server, job["id"], extra=2)
    # It really left the job's session and group (it calls setsid just after it starts).
    wait_for(lambda: os.getsid(pids[-1]) == pids[-1], 5, "the grandchild to call setsid")
    response = server.stop_job(job["id"])
    assert response.status == 200 and response.json()["status"] == "cancelled", response.body
    wait_for(lambda: not any(alive(k) for k in keys), 1.0, "every process of the job to be gone")
    record(processes=len(keys))


def test_setsid_grandchild_does_not_survive_a_server_crash(start_server, tone, record):
    """The lifeline kills the leader's group; the escaped grandchild is in none of it. The
    restarted server must find it by its marker and end it."""
    server = start_server(  # the orphan rule; resuming would queue the job again
        "--no-resume-interrupted", fake=["--lines", "100000", "--interval", "0.05", "--setsid-grandchild"]
    )
    job = server.upload(tone, on_disconnect="keep")
    server.wait_running(job["id"])
    escapee = wait_helpers(server, job["id"], 1)[-1]
    keys = group_keys(server, job["id"], extra=1)
    server.sigkill()
    wait_for(
        lambda: all(key[0] == escapee for key in keys if alive(key)),
        5,
        "the lifeline to end the job's group (all but the grandchild that left it)",
    )
    before_restart = [k for k in keys if alive(k)]
    server.start()
    row = server.job(job["id"])
    assert row["status"] == "failed" and row["error_message"].startswith("orphaned:"), row
    wait_for(lambda: not any(alive(k) for k in keys), 5, "the escaped grandchild to be ended")
    record(alive_after_crash=len(before_restart), alive_after_restart=0)


async def follow(url: str, job_id: int, timeout: float) -> list[dict[str, Any]]:
    """Every message of one job until its final status."""
    seen: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        await ws.send_json({"type": "subscribe", "job": job_id})
        async with asyncio.timeout(timeout):
            async for frame in ws:
                data = json.loads(frame.data)
                for message in data if isinstance(data, list) else [data]:
                    seen.append(message)
                    if message["type"] == "status" and message["status"] in (
                        "completed", "failed", "cancelled",
                    ):  # fmt: skip
                        return seen
    raise AssertionError(f"socket closed before job {job_id} ended; last: {seen[-3:]}")


async def test_ten_mb_line_and_cr_progress_keep_streaming(start_server, tone, record):
    server = start_server(
        fake=[
            "--long-line", str(10 * 2**20), "--cr-progress", "5000",
            "--lines", "200", "--interval", "0.01",
        ]
    )  # fmt: skip
    rss_before = server.rss_mb()
    with Pinger(server) as pinger:
        job = await asyncio.to_thread(server.upload, tone, on_disconnect="keep")
        seen = await follow(server.ws_url, job["id"], timeout=60)
    final = server.job(job["id"])
    assert final["status"] == "completed", final
    logs = [m for m in seen if m["type"] == "log"]
    lines = [m["line"] for m in logs]
    assert "line 200 of 200" in lines and lines[-1] == "done", lines[-5:]
    # Numbered without gaps, and no single message carries the whole 10 MB.
    gaps = sum(m["missed"] for m in seen if m["type"] == "gap")
    seqs = [m["seq"] for m in logs]
    assert seqs == sorted(set(seqs)) and seqs[-1] == len(seqs) + gaps, (len(seqs), gaps, seqs[-1])
    assert max(len(line) for line in lines) <= 1 << 20
    assert not pinger.failures, pinger.failures[:3]
    assert pinger.worst < 1.0, pinger.worst
    log_size = Path(final["log_file_path"]).stat().st_size
    rss_after = server.rss_mb()
    assert rss_after - rss_before < 100, (rss_before, rss_after)
    record(
        health_checks=len(pinger.latencies),
        worst_health_ms=round(pinger.worst * 1000),
        median_health_ms=round(statistics.median(pinger.latencies) * 1000, 1),
        log_messages=len(logs),
        longest_line=max(len(line) for line in lines),
        log_file_bytes=log_size,
        rss_growth_mb=round(rss_after - rss_before, 1),
    )


@pytest.mark.slow
async def test_flood_is_capped_and_does_not_stall_other_jobs(start_server, tone, behaviours, record):
    flood_bytes = FLOOD_BYTES
    server = start_server(
        "--log-cap-mb", "5",
        "--max-concurrent-jobs", "2",
        "--loop-lag-interval", "0.01",
        *behaviours(
            flood=["--flood-bytes", str(flood_bytes), "--lines", "1"],
            ticker=["--lines", "100000", "--interval", "0.02", "--timestamps", "--segments", "0"],
        ),
    )  # fmt: skip
    ticker = await asyncio.to_thread(server.upload, tone, model="ticker", on_disconnect="keep")
    await asyncio.to_thread(server.wait_running, ticker["id"])
    rss_before = server.rss_mb()
    rss_peak = rss_before
    loop_lag_max = 0.0
    # Timing claims on a shared 2-core box depend on what else runs: keep the evidence.
    server_proc = psutil.Process(server.pid)
    cpu_before = sum(server_proc.cpu_times()[:2])
    load_max = os.getloadavg()[0]
    lateness: list[float] = []
    began = time.monotonic()

    async def watch_ticker(stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(server.ws_url) as ws:
            await ws.send_json({"type": "subscribe", "job": ticker["id"]})
            while not stop.is_set():
                try:
                    frame = await ws.receive(timeout=0.5)
                except TimeoutError:
                    lateness.append(0.5)
                    continue
                now = time.time()
                data = json.loads(frame.data)
                for message in data if isinstance(data, list) else [data]:
                    if message["type"] == "log" and message["line"][:1].isdigit():
                        lateness.append(now - float(message["line"].split()[0]))

    async def stalled_reader() -> None:
        # Subscribes to the flood and never reads: its queue must stay bounded. A raw
        # socket, so no client library drains it behind the test's back.
        _reader, writer = await raw_ws_open(server.port)
        writer.write(ws_text_frame({"type": "subscribe", "job": flood["id"]}))
        try:
            await asyncio.sleep(3600)
        finally:
            writer.transport.abort()

    async def ticker_entries(count: int) -> None:
        """Wait for `count` more entries from the ticker's client (a line every 0.02 s)."""
        wanted = len(lateness) + count
        async with asyncio.timeout(60):
            while len(lateness) < wanted:
                if watcher.done():
                    watcher.result()  # raises what ended it
                    raise AssertionError("the ticker's client stopped")
                await asyncio.sleep(0.05)

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_ticker(stop))
    await ticker_entries(50)  # its warm-up, skipped below, is over before the flood
    flood = await asyncio.to_thread(server.upload, tone, model="flood", on_disconnect="keep")
    stalled = asyncio.create_task(stalled_reader())
    try:
        while True:
            row = await asyncio.to_thread(server.job, flood["id"])
            rss_peak = max(rss_peak, server.rss_mb())
            lag = (await asyncio.to_thread(server.health)).get("loop_lag_ms", {})
            loop_lag_max = max(loop_lag_max, float(lag.get("max", 0.0)))
            load_max = max(load_max, os.getloadavg()[0])
            if row["status"] in ("completed", "failed", "cancelled"):
                break
            assert time.monotonic() - began < 240, "flood job did not finish in 240 s"
            await asyncio.sleep(0.25)
        flood_seconds = time.monotonic() - began
        server_cpu_share = (sum(server_proc.cpu_times()[:2]) - cpu_before) / flood_seconds
        await ticker_entries(50)  # and a second of the ticker after the flood
    finally:
        stop.set()
        stalled.cancel()
        await asyncio.gather(watcher, stalled, return_exceptions=True)
    assert row["status"] == "completed", row
    cap = 5 * 1024 * 1024  # --log-cap-mb is MiB
    log_size = Path(row["log_file_path"]).stat().st_size
    assert cap - 200 <= log_size <= cap + 300, log_size
    assert "reached its cap" in Path(row["log_file_path"]).read_text()[-400:]
    assert lateness, "the ticker's client got no lines"
    # Skip the first second, the connection's own warm-up.
    worst = max(lateness[50:])
    record(
        flood_bytes=flood_bytes,
        flood_seconds=round(flood_seconds, 1),
        log_file_bytes=log_size,
        rss_before_mb=round(rss_before, 1),
        rss_peak_mb=round(rss_peak, 1),
        ticker_lines=len(lateness),
        worst_ticker_lateness_ms=round(worst * 1000, 1),
        server_loop_lag_max_ms=loop_lag_max,
        server_cpu_share=round(server_cpu_share, 2),
        load_average_max=round(load_max, 1),
        p99_ticker_lateness_ms=round(sorted(lateness)[int(len(lateness) * 0.99)] * 1000, 1),
    )
    assert rss_peak - rss_before < 60, (rss_before, rss_peak)
    # A stall, not a latency target: a 1 GB flood must not hold the other job's lines back
    # for seconds. Its lateness is measured for real by benchmarks (log latency rows); a
    # 100 ms bound here failed on a 2-core box that other processes were also loading.
    assert worst < 2.0, f"the other job's client stalled {worst * 1000:.0f} ms"
    assert server.job(ticker["id"])["status"] == "running"
    server.stop_job(ticker["id"])


def test_instant_exit_self_kill_and_clean_exit_get_clear_endings(start_server, tone, behaviours, record):
    server = start_server(
        *behaviours(
            instant_fail=["--lines", "0", "--exit-code", "3", "--segments", "0"],
            instant_ok=["--lines", "0", "--segments", "0"],
            oom=["--lines", "3", "--self-kill"],
            fails_loudly=["--lines", "2", "--exit-code", "1", "--fail-message", "model exploded"],
        )
    )
    expected = {
        "instant_fail": ("failed", 3, "exit code 3"),
        "instant_ok": ("completed", 0, None),
        "oom": ("failed", -9, "killed by signal SIGKILL"),
        "fails_loudly": ("failed", 1, "exit code 1: error: model exploded"),
    }
    endings = {}
    for model, (status, code, message) in expected.items():
        job = server.upload(tone, model=model, on_disconnect="keep")
        final = server.wait_final(job["id"], timeout=20)
        assert final["status"] == status, final
        assert final["exit_code"] == code, final
        if message is not None:
            assert final["error_message"].startswith(message), final
        endings[model] = f"{final['status']}, exit {final['exit_code']}, {final['error_message']!r}"
    record(endings=endings)


def test_missing_executable_fails_to_start_clearly(start_server, tone, tmp_path, record):
    missing = tmp_path / "no-such-pipeline"
    server = start_server("--pipeline-command", str(missing))
    job = server.upload(tone, on_disconnect="keep")
    final = server.wait_final(job["id"], timeout=10)
    assert final["status"] == "failed", final
    assert final["error_message"].startswith("failed to start:"), final
    assert str(missing) in final["error_message"] or "No such file" in final["error_message"]
    assert final["process_id"] is None
    lines = server.log_lines(job["id"], 5)
    assert any("failed to start" in line for line in lines), lines
    assert server.health()["status"] == "ok"
    record(error_message=final["error_message"])
