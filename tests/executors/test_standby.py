"""Warm standbys through the real app and the real pipeline (bundled tiny.en)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from server import keys
from server.app import create_app
from server.config import Config
from server.executors.base import LocalHandle
from server.executors.local import LocalExecutor
from server.executors.standby import StandbyExecutor
from server.procs.identity import MARKER_ENV
from tests.helpers.app_api import upload, wait_status
from tests.helpers.audio import FIXTURE_SENTENCE, SPEECH_CLIP, repeated_speech
from tests.helpers.health import health
from tests.helpers.procs import alive_in_group
from tests.helpers.wer import wer

pytestmark = pytest.mark.slow

FINAL = {"completed", "failed", "cancelled"}
WARM_SECONDS = 120  # warming is niced: on a busy machine it waits its turn


@pytest.fixture
def real_config(make_config: Callable[..., Config]) -> Callable[..., Config]:
    def make(**overrides: Any) -> Config:
        return make_config(**{"pipeline_command": (), "standby": 1, **overrides})

    return make


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never wait on the network for a model


async def wait_ready(client: Any, count: int = 1) -> dict[str, Any]:
    async with asyncio.timeout(WARM_SECONDS):
        while (body := await health(client))["standby"]["ready"] < count:
            await asyncio.sleep(0.1)
    return body


async def log_text(client: Any, job_id: int) -> str:
    lines = (await (await client.get(f"/api/jobs/{job_id}/logs?lines=500")).json())["lines"]
    return "\n".join(str(line) for line in lines)


async def wait_log(client: Any, job_id: int, text: str, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while text not in await log_text(client, job_id):
            await asyncio.sleep(0.05)


def standby_pids(app: Any) -> list[int]:
    executor = app[keys.EXECUTORS].executor
    assert isinstance(executor, StandbyExecutor)
    return [s.pid for s in executor._standbys]


def long_audio(tmp_path: Path) -> Path:
    return repeated_speech(tmp_path / "long.wav", copies=12, source=SPEECH_CLIP)  # 90 s


async def test_job_starts_warm_and_a_new_standby_follows(aiohttp_client, real_config):
    app = create_app(real_config())
    client = await aiohttp_client(app)
    body = await wait_ready(client)
    assert body["standby"]["memory_mb"] > 50  # the model is loaded
    assert "Warm start: 1 pipeline(s) ready" in await (await client.get("/")).text()
    [ready_pid] = standby_pids(app)

    job = await (await upload(client, SPEECH_CLIP, on_disconnect="keep")).json()
    final = await wait_status(client, job["id"], FINAL, timeout=120)
    assert final["status"] == "completed", final
    assert final["process_id"] == ready_pid  # the standby became the job's process
    assert "before the job (warm start)" in await log_text(client, job["id"])
    text = (Path(final["output_path"]) / "transcript.txt").read_text()
    assert wer(FIXTURE_SENTENCE, text) <= 0.15
    await wait_ready(client)  # warmed behind the job
    assert standby_pids(app) != [ready_pid]


async def test_a_job_takes_a_standby_that_is_still_warming(aiohttp_client, real_config):
    app = create_app(real_config())
    client = await aiohttp_client(app)
    async with asyncio.timeout(30):
        while not (pids := standby_pids(app)):
            await asyncio.sleep(0.01)
    warming = (await health(client))["standby"]["warming"]
    job = await (await upload(client, SPEECH_CLIP, on_disconnect="keep")).json()
    final = await wait_status(client, job["id"], FINAL, timeout=120)
    assert final["status"] == "completed", final
    assert final["process_id"] == pids[0], (final, warming)
    assert "before the job (warm start)" in await log_text(client, job["id"])


def autogroup_nice(pid: int) -> int | None:
    """The nice of the process's session autogroup, or None without autogroups."""
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    except FileNotFoundError:
        return None


async def test_stop_of_a_warm_job_kills_its_group_at_full_priority(aiohttp_client, real_config, tmp_path):
    app = create_app(real_config())
    client = await aiohttp_client(app)
    await wait_ready(client)
    # Waiting, it runs only on a core no job wants, and its session's autogroup (where
    # the kernel groups by session) is niced too.
    assert {os.sched_getscheduler(pid) for pid in standby_pids(app)} == {os.SCHED_IDLE}
    assert {autogroup_nice(pid) for pid in standby_pids(app)} <= {19, None}
    job = await (await upload(client, long_audio(tmp_path), on_disconnect="keep")).json()
    running = await wait_status(client, job["id"], {"running"} | FINAL)
    await wait_log(client, job["id"], "started on worker 1")
    members = alive_in_group(running["process_group_id"])
    assert len(members) >= 2  # the standby leader and its loaded worker
    # Raised back from the standby's nice (ours + 10) to ours, as a cold job would have
    # it, every thread of the group.
    nices = {t.id: psutil.Process(t.id).nice() for p in members for t in p.threads()}
    assert set(nices.values()) == {os.getpriority(os.PRIO_PROCESS, 0)}, nices
    # And out of SCHED_IDLE, which the standby warmed up in.
    policies = {t.id: os.sched_getscheduler(t.id) for p in members for t in p.threads()}
    assert set(policies.values()) == {os.SCHED_OTHER}, policies
    assert autogroup_nice(running["process_id"]) in (0, None)  # as a cold job's new session
    stopped = await (await client.post(f"/api/jobs/{job['id']}/stop")).json()
    assert stopped["status"] == "cancelled", stopped
    assert alive_in_group(running["process_group_id"]) == []


async def test_a_warm_job_runs_in_its_own_cgroup(aiohttp_client, real_config, tmp_path):
    from tests.helpers.cgroups import require_cgroups

    require_cgroups().close()  # skips only where cgroups are unavailable (fails in CI)
    app = create_app(real_config())
    client = await aiohttp_client(app)
    await wait_ready(client)
    assert (await health(client))["containment"] == "cgroup"
    job = await (await upload(client, long_audio(tmp_path), on_disconnect="keep")).json()
    running = await wait_status(client, job["id"], {"running"} | FINAL)
    await wait_log(client, job["id"], "started on worker 1")
    [run] = app[keys.RUNNER].runs()
    handle = run.handle
    assert isinstance(handle, LocalHandle) and handle.cgroup is not None
    members = alive_in_group(running["process_group_id"])
    assert members and set(handle.cgroup.pids()) >= {p.pid for p in members}
    cgroup_path = handle.cgroup.path
    stopped = await (await client.post(f"/api/jobs/{job['id']}/stop")).json()
    assert stopped["status"] == "cancelled", stopped
    assert alive_in_group(running["process_group_id"]) == []
    async with asyncio.timeout(10):
        while cgroup_path.exists():
            await asyncio.sleep(0.05)


async def test_disconnect_cancels_a_warm_job(aiohttp_client, real_config, tmp_path):
    client = await aiohttp_client(create_app(real_config()))
    await wait_ready(client)
    job = await (await upload(client, long_audio(tmp_path))).json()
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        await wait_log(client, job["id"], "warm start")
    final = await wait_status(client, job["id"], FINAL, timeout=30)
    assert final["status"] == "cancelled" and final["cancel_reason"] == "all clients disconnected"
    assert alive_in_group(final["process_group_id"]) == []


async def test_a_standby_that_dies_unused_is_replaced_and_jobs_still_run(aiohttp_client, real_config):
    app = create_app(real_config())
    client = await aiohttp_client(app)
    await wait_ready(client)
    [first] = standby_pids(app)
    os.killpg(first, signal.SIGKILL)  # this app's own standby, its own group
    # Dead before it is used: once the server has seen it go (a kill is not instant, and
    # a job handed to it meanwhile dies with it, which is another case).
    async with asyncio.timeout(WARM_SECONDS):
        while first in standby_pids(app):
            await asyncio.sleep(0.02)
    job = await (await upload(client, SPEECH_CLIP, on_disconnect="keep")).json()
    final = await wait_status(client, job["id"], FINAL, timeout=120)
    assert final["status"] == "completed", (final["error_message"], final["exit_code"])
    assert final["process_id"] != first
    await wait_ready(client)
    assert first not in standby_pids(app)


async def test_a_burst_larger_than_the_standbys_all_completes(aiohttp_client, real_config):
    client = await aiohttp_client(create_app(real_config(max_concurrent_jobs=2)))
    await wait_ready(client)
    jobs = [(await (await upload(client, SPEECH_CLIP, on_disconnect="keep")).json()) for _ in range(4)]
    finals = [await wait_status(client, j["id"], FINAL, timeout=240) for j in jobs]
    assert [f["status"] for f in finals] == ["completed"] * 4, finals
    warm = ["warm start" in await log_text(client, j["id"]) for j in jobs]
    assert warm[0], warm  # the others take a standby still warming, or start cold


async def test_standby_zero_starts_every_job_cold(aiohttp_client, real_config):
    app = create_app(real_config(standby=0))
    client = await aiohttp_client(app)
    assert "standby" not in await health(client)
    assert type(app[keys.EXECUTORS].executor) is LocalExecutor
    job = await (await upload(client, SPEECH_CLIP, on_disconnect="keep")).json()
    final = await wait_status(client, job["id"], FINAL, timeout=120)
    assert final["status"] == "completed", final
    assert "warm start" not in await log_text(client, job["id"])


async def test_a_custom_pipeline_command_never_starts_a_standby(aiohttp_client, make_config, tone):
    app = create_app(make_config("--lines", "3", standby=2))
    client = await aiohttp_client(app)
    assert type(app[keys.EXECUTORS].executor) is LocalExecutor
    assert "standby" not in await health(client)
    assert "Warm start" not in await (await client.get("/")).text()
    assert psutil.Process().children(recursive=True) == []  # nothing before a job
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    final = await wait_status(client, job["id"], FINAL)
    assert final["status"] == "completed", final


FAKE_STANDBY = Path(__file__).resolve().parents[1] / "fixtures" / "fake_standby.py"


async def test_stop_kills_escapees_of_a_warm_job_whichever_marker_they_show(
    aiohttp_client, make_config, tone
):
    command = (sys.executable, str(FAKE_STANDBY))
    executor = StandbyExecutor(count=1, model="tiny.en", threads=1, install_id="test", command=command)
    app = create_app(make_config(pipeline_command=command), executor=executor)
    client = await aiohttp_client(app)
    await wait_ready(client)
    [standby_marker] = [s.marker for s in executor._standbys]
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    await wait_status(client, job["id"], {"running"})
    escapees: list[psutil.Process] = []
    try:
        async with asyncio.timeout(30):
            while len(pids := re.findall(r"escapee (\d+)", await log_text(client, job["id"]))) < 2:
                await asyncio.sleep(0.05)
        escapees = [psutil.Process(int(pid)) for pid in pids]
        job_marker = f"{app[keys.STORE].install_id}:{job['id']}"
        markers = [p.environ().get(MARKER_ENV) for p in escapees]
        assert markers == [job_marker, standby_marker]  # exec'd after the env was set; forked
        stopped = await (await client.post(f"/api/jobs/{job['id']}/stop")).json()
        assert stopped["status"] == "cancelled", stopped
        assert [p.pid for p in escapees if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
        assert alive_in_group(stopped["process_group_id"]) == []
    finally:
        for proc in escapees:  # ours: only if the kill under test failed
            with contextlib.suppress(psutil.Error):
                proc.kill()
