"""Jobs on a real Ray head on loopback (issue #17): the same live log, metrics, transcript,
stop and auto-kill as local jobs, and no work lost to a server crash."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pipeline.protocol import format_progress, format_segment
from pipeline.ray_entry import SECRET_ENV, SECRET_HEADER
from server.app import create_app
from server.config import Config
from server.executors.base import job_marker
from server.procs.identity import marker_carriers
from tests.executors.conftest import require_ray
from tests.helpers.app_api import upload, wait_for_line, wait_status
from tests.helpers.fake import fake_command, fake_pipeline_args
from tests.helpers.server_proc import ServerProcess, free_port
from tests.helpers.waiting import wait_for
from tests.helpers.wsclient import collect_until, is_final_status

pytestmark = pytest.mark.slow

# A Ray job's first line comes ~3.5 s after submit and its tail closes 3-5 s after it ends.
JOB_TIMEOUT = 120.0


async def ray_client(aiohttp_client: Any, config: Config) -> Any:
    # On config.port, so the node reaches it at config.node_url.
    return await aiohttp_client(create_app(config), server_kwargs={"port": config.port})


async def ray_job_info(config: Config, submission_id: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    client = await asyncio.to_thread(JobSubmissionClient, config.ray_address)
    return await asyncio.to_thread(client.get_job_info, submission_id)


async def test_ray_job_completes_with_log_metrics_and_transcript(aiohttp_client, ray_config, tone):
    config = ray_config("--lines", "30", "--interval", "0.1")
    client = await ray_client(aiohttp_client, config)
    job = await (await upload(client, tone)).json()
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        seen = await collect_until(ws, is_final_status, timeout=JOB_TIMEOUT)
    assert seen[-1]["status"] == "completed", seen[-5:]
    logs = [m for m in seen if m["type"] == "log"]
    assert [m["seq"] for m in logs] == list(range(1, len(logs) + 1))
    lines = [m["line"] for m in logs]
    assert "line 30 of 30" in lines and lines[-1] == "done"
    assert not [line for line in lines if line.startswith(("[metrics]", "[result]"))]
    metrics = [m for m in seen if m["type"] == "metrics"]
    assert metrics and max(m["num_processes"] for m in metrics) >= 2  # wrapper + pipeline
    assert any(m["type"] == "segment" for m in seen)

    final = await (await client.get(f"/api/jobs/{job['id']}")).json()
    assert final["executor"] == "ray" and final["exit_code"] == 0
    assert final["ray_submission_id"].startswith("transcriptor-") and final["ray_node"]
    assert final["job_secret_hash"] is None  # used once, then forgotten
    text = await (await client.get(f"/api/jobs/{job['id']}/transcript.txt")).text()
    assert "segment 1" in text
    log_text = Path(final["log_file_path"]).read_text()
    assert log_text.count("\n") == len(logs)

    info = await ray_job_info(config, final["ray_submission_id"])
    assert info.metadata["transcriptor_job"] == str(job["id"])
    secret = info.runtime_env["env_vars"][SECRET_ENV]
    assert str(config.data_dir) not in info.entrypoint and secret not in info.entrypoint
    assert secret not in log_text
    again = await client.get(f"/api/node/jobs/{job['id']}/audio", headers={SECRET_HEADER: secret})
    assert again.status == 403
    assert job_processes(job_marker(await install_id(client), job["id"])) == []


async def install_id(client: Any) -> str:
    from server import keys

    return client.server.app[keys.STORE].install_id


def job_processes(marker: str) -> list[int]:
    """The job's processes on this machine (the node): the wrapper, the pipeline and its
    children carry the marker; Ray's own supervisor actor (ray::...) is not the job."""
    import psutil

    found = []
    for ident in marker_carriers(marker):
        try:
            if not psutil.Process(ident.pid).name().startswith("ray::"):
                found.append(ident.pid)
        except psutil.Error:
            continue
    return found


async def test_stop_stops_the_ray_job_and_every_process(aiohttp_client, ray_config, tone):
    config = ray_config("--lines", "100000", "--interval", "0.05", "--grandchildren", "1")
    client = await ray_client(aiohttp_client, config)
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    await wait_for_line(client, job["id"], timeout=JOB_TIMEOUT)
    marker = job_marker(await install_id(client), job["id"])
    assert len(job_processes(marker)) >= 3  # wrapper, pipeline, its sleeping child
    response = await client.post(f"/api/jobs/{job['id']}/stop")
    assert response.status == 200
    stopped = await response.json()
    assert stopped["status"] == "cancelled" and stopped["cancel_reason"] == "stopped by user"
    # Recorded only once Ray said STOPPED, and nothing of the job outlives it.
    assert (await ray_job_info(config, stopped["ray_submission_id"])).status.value == "STOPPED"
    assert job_processes(marker) == []


async def test_last_client_leaving_stops_the_ray_job(aiohttp_client, ray_config, tone):
    config = ray_config("--lines", "100000", "--interval", "0.05")
    client = await ray_client(aiohttp_client, config)
    job = await (await upload(client, tone)).json()
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        await collect_until(ws, lambda m: m["type"] == "log", timeout=JOB_TIMEOUT)
    final = await wait_status(client, job["id"], {"cancelled", "failed", "completed"}, timeout=60)
    assert final["status"] == "cancelled" and final["cancel_reason"] == "all clients disconnected"
    assert (await ray_job_info(config, final["ray_submission_id"])).status.value == "STOPPED"
    assert job_processes(job_marker(await install_id(client), job["id"])) == []


async def test_node_with_another_version_fails_the_job_with_one_clear_line(
    aiohttp_client, ray_config, tone, monkeypatch
):
    # The server expects a version this node does not run.
    monkeypatch.setattr("server.executors.ray.transcriptor_version", lambda: "0.0.0-other")
    client = await ray_client(aiohttp_client, ray_config())
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    final = await wait_status(client, job["id"], {"cancelled", "failed", "completed"}, timeout=JOB_TIMEOUT)
    assert final["status"] == "failed" and final["exit_code"] == 2
    assert "version mismatch" in final["error_message"]
    assert "0.0.0-other" in final["error_message"]
    lines = Path(final["log_file_path"]).read_text().splitlines()
    assert sum("version mismatch" in line for line in lines) == 1


async def test_ray_head_down_at_submit_fails_the_job_and_the_server_serves_on(
    aiohttp_client, tmp_path, tone
):
    require_ray()
    config = Config(
        data_dir=tmp_path / "data",
        executor="ray",
        ray_address=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        disk_reserve_mb=0,
        heartbeat_interval=0.5,
        pipeline_command=fake_command(),
    )
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    final = await wait_status(client, job["id"], {"cancelled", "failed", "completed"}, timeout=60)
    assert final["status"] == "failed"
    assert final["error_message"].startswith("failed to start: cannot reach the Ray cluster at")
    assert (await client.get("/api/health")).status == 200
    second = await upload(client, tone)
    assert second.status == 201


def ray_server(tmp_path: Path, ray_address: str, *fake: str) -> ServerProcess:
    return ServerProcess(
        tmp_path / "data",
        ["--executor", "ray", "--ray-address", ray_address, *fake_pipeline_args(*fake)],
    )


def expected_fake_log(lines: int) -> list[str]:
    """What the fake pipeline prints (one segment every --lines / 3 lines) and nothing else."""
    out, segments = [], 0
    for i in range(lines):
        out.append(f"line {i + 1} of {lines}")
        if i % max(1, lines // 3) == 0 and segments < 3:
            segments += 1
            out.append(format_segment(float(i), float(i + 1), f"segment {segments}"))
        out.append(format_progress(i + 1, float(lines)))
    return [*out, "done"]


def job_log_tail(path: str, start_marker: str) -> list[str]:
    """The log from the first fake pipeline line on (Ray's and the wrapper's lines first)."""
    lines = Path(path).read_text().splitlines()
    return lines[lines.index(start_marker) :]


def test_server_sigkill_reattaches_a_running_ray_job_without_losing_a_line(tmp_path, ray_address, tone):
    server = ray_server(tmp_path, ray_address, "--lines", "120", "--interval", "0.1").start()
    try:
        job = server.upload(tone, on_disconnect="keep")
        wait_for(lambda: len(server.log_lines(job["id"])) >= 10, JOB_TIMEOUT, "some log lines")
        row = server.job(job["id"])
        server.sigkill()
        # A Ray job outlives the server: it is still running when the server is back.
        server.start()
        final = server.wait_final(job["id"], timeout=JOB_TIMEOUT)
        assert final["status"] == "completed", final
        assert final["ray_submission_id"] == row["ray_submission_id"]
        assert final["instance_id"] != row["instance_id"]
        log = job_log_tail(final["log_file_path"], "line 1 of 120")
        assert log == expected_fake_log(120)  # no line repeated, none missing
        transcript = server.request("GET", f"/api/jobs/{job['id']}/transcript.txt")
        assert transcript.status == 200 and b"segment 3" in transcript.body
    finally:
        server.stop()


def test_ray_job_that_finished_while_the_server_was_down_takes_its_status_from_ray(
    tmp_path, ray_address, tone
):
    server = ray_server(tmp_path, ray_address, "--lines", "40", "--interval", "0.1").start()
    try:
        job = server.upload(tone, on_disconnect="keep")
        wait_for(lambda: server.log_lines(job["id"]), JOB_TIMEOUT, "a log line")
        row = server.job(job["id"])
        server.sigkill()
        from ray.job_submission import JobSubmissionClient

        ray = JobSubmissionClient(ray_address)
        submission_id = row["ray_submission_id"]
        wait_for(lambda: ray.get_job_status(submission_id).is_terminal(), JOB_TIMEOUT, "the Ray job to end")
        server.start()
        final = server.wait_final(job["id"], timeout=JOB_TIMEOUT)
        assert final["status"] == "completed" and final["exit_code"] == 0, final
        assert job_log_tail(final["log_file_path"], "line 1 of 40") == expected_fake_log(40)
        transcript = server.request("GET", f"/api/jobs/{job['id']}/transcript.txt")
        assert transcript.status == 200 and b"segment 1" in transcript.body
    finally:
        server.stop()


async def test_ray_job_whose_row_is_over_is_stopped_by_the_cluster_sweep(aiohttp_client, ray_config, tone):
    from server import keys

    config = ray_config("--lines", "100000", "--interval", "0.05")
    client = await ray_client(aiohttp_client, config)
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    await wait_for_line(client, job["id"], timeout=JOB_TIMEOUT)
    row = await (await client.get(f"/api/jobs/{job['id']}")).json()
    # The database says the job is over (another tool settled it) while Ray still runs it.
    assert await client.server.app[keys.STORE].fail_job(job["id"], "settled elsewhere")
    async with asyncio.timeout(60):
        while (await ray_job_info(config, row["ray_submission_id"])).status.value != "STOPPED":
            await asyncio.sleep(0.2)
    final = await wait_status(client, job["id"], {"failed"})
    assert final["error_message"] == "settled elsewhere"
    async with asyncio.timeout(10):
        while job_processes(job_marker(await install_id(client), job["id"])):
            await asyncio.sleep(0.1)


def test_cleanup_stops_the_ray_job_of_a_dead_server_and_fails_it_as_orphaned(tmp_path, ray_address, tone):
    from tests.helpers.cli_proc import cli
    from tests.helpers.env import clean_env

    server = ray_server(tmp_path, ray_address, "--lines", "100000", "--interval", "0.05").start()
    job = server.upload(tone, on_disconnect="keep")
    wait_for(lambda: server.log_lines(job["id"]), JOB_TIMEOUT, "a log line")
    row = server.job(job["id"])
    server.sigkill()  # and no server comes back to re-attach it
    env = {**clean_env(), "TRANSCRIPTOR_RAY_ADDRESS": ray_address}
    done = cli("cleanup", "--data-dir", str(tmp_path / "data"), env=env)
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(tmp_path / "data" / "transcriptor.db")
    status, message = db.execute(
        "SELECT status, error_message FROM transcription_jobs WHERE id = ?", (job["id"],)
    ).fetchone()
    assert status == "failed" and message.startswith("orphaned:") and "asked Ray to stop" in message
    from ray.job_submission import JobSubmissionClient

    ray = JobSubmissionClient(ray_address)
    submission_id = row["ray_submission_id"]
    wait_for(lambda: ray.get_job_status(submission_id).value == "STOPPED", 30, "the Ray job to stop")
