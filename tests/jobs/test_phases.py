"""The running job's phase machine, and what the runner does when something goes wrong."""

from __future__ import annotations

import time

import pytest

from server.app import create_app
from server.jobs import joblog
from server.jobs.runner import SHUTDOWN_MARGIN_SECONDS
from server.jobs.state import (
    REASON_SHUTDOWN,
    JobStatus,
    Phase,
    PhaseError,
    PhaseMachine,
    decide_ending,
)
from server.store import Store
from tests.helpers.app_api import upload, wait_for_line, wait_status
from tests.helpers.procs import alive_in_group


def test_phase_moves_only_along_the_table():
    machine = PhaseMachine()
    assert machine.phase is Phase.STARTING and not machine.has_process
    machine.change(Phase.RUNNING)
    assert machine.has_process
    machine.change(Phase.DRAINING)
    with pytest.raises(PhaseError, match="carries a reason"):
        machine.change(Phase.STOPPING)
    machine.change(Phase.STOPPING, reason="stopped by user")
    assert machine.stop_reason == "stopped by user"
    machine.change(Phase.ENDED)
    with pytest.raises(PhaseError, match="from ended to running"):
        machine.change(Phase.RUNNING)
    with pytest.raises(PhaseError):
        PhaseMachine().change(Phase.DRAINING)  # nothing to drain before a process ran


def test_ending_is_decided_in_one_place():
    assert decide_ending(0, cancel_reason=None).status is JobStatus.COMPLETED
    assert decide_ending(-15, cancel_reason="stopped by user").status is JobStatus.CANCELLED
    failed = decide_ending(-9, cancel_reason=None, detail="error: boom")
    assert failed.status is JobStatus.FAILED and failed.message == "killed by signal SIGKILL: error: boom"


async def test_runner_error_kills_the_group_before_recording_failure(
    aiohttp_client, make_config, tone, monkeypatch
):
    # A program that ignores the lifeline, as a custom --pipeline-command may: releasing
    # the handle alone would leave it and its child running with nobody watching.
    config = make_config(
        "--lines", "100000", "--interval", "0.01", "--ignore-lifeline", "--grandchildren", "1"
    )
    original = joblog.JobLog.write
    calls = 0

    def failing_write(self, line):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 20:
            raise RuntimeError("injected: the log write failed")
        original(self, line)

    monkeypatch.setattr(joblog.JobLog, "write", failing_write)
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    running = await wait_status(client, job["id"], {"running", "failed"})
    ended = await wait_status(client, job["id"], {"failed"})
    assert ended["error_message"] == "internal error in the job runner"
    assert running["process_group_id"] and alive_in_group(running["process_group_id"]) == []


async def test_shutdown_with_ten_stubborn_jobs_ends_within_its_deadline(aiohttp_client, make_config, tone):
    config = make_config(
        "--lines", "100000", "--interval", "0.05", "--ignore-term", "--grandchildren", "1",
        max_concurrent_jobs=10, kill_grace=1.0, resume_interrupted=False,
    )  # fmt: skip
    client = await aiohttp_client(create_app(config))
    jobs = [await (await upload(client, tone, on_disconnect="keep")).json() for _ in range(10)]
    rows = [await wait_status(client, j["id"], {"running"}) for j in jobs]
    for job in jobs:
        await wait_for_line(client, job["id"])
    began = time.monotonic()
    await client.server.close()
    took = time.monotonic() - began
    # Bounded by the deadline (grace + margin), with room for a loaded machine.
    assert took < config.kill_grace + SHUTDOWN_MARGIN_SECONDS + 10, took
    for row in rows:
        assert alive_in_group(row["process_group_id"]) == []
    store = await Store.open(config.db_path)
    try:
        for job in jobs:
            row = await store.get_job(job["id"])
            assert row is not None and row["status"] == "cancelled"
            assert row["cancel_reason"] == REASON_SHUTDOWN
    finally:
        await store.close()
