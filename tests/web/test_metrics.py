"""GET /metrics, scraped from a real app while real (fake-pipeline) jobs run."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from server import keys
from server.app import create_app


async def scrape(client: Any, **headers: str) -> dict[str, float]:
    """Each sample as 'name{label="value"}' -> value."""
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.content_type == "text/plain"
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


async def run_job(client: Any, path: Any, **fields: str) -> int:
    form = aiohttp.FormData()
    form.add_field("file", path.read_bytes(), filename=path.name)
    for name, value in fields.items():
        form.add_field(name, value)
    job = await (await client.post("/api/jobs", data=form)).json()
    async with asyncio.timeout(20):
        while (await (await client.get(f"/api/jobs/{job['id']}")).json())["status"] not in (
            "completed",
            "failed",
            "cancelled",
        ):
            await asyncio.sleep(0.02)
    return int(job["id"])


async def wait_metric(client: Any, name: str, value: float, timeout: float = 10) -> dict[str, float]:
    async with asyncio.timeout(timeout):
        while (found := await scrape(client)).get(name) != value:
            await asyncio.sleep(0.02)
    return found


async def test_jobs_are_counted(aiohttp_client, make_config, tone):
    client = await aiohttp_client(create_app(make_config("--lines", "7")))
    before = await scrape(client)
    assert before["transcriptor_jobs_running"] == 0 and before["transcriptor_jobs_queued"] == 0
    assert before["transcriptor_log_lines_total"] == 0
    await run_job(client, tone, on_disconnect="keep")
    values = await wait_metric(client, 'transcriptor_jobs_finished_total{status="completed"}', 1)
    assert values['transcriptor_jobs_submitted_total{source="upload"}'] == 1
    assert values["transcriptor_job_duration_seconds_count"] == 1
    assert values["transcriptor_queue_wait_seconds_count"] == 1
    assert values["transcriptor_audio_seconds_total"] == 1.0  # the tone is one second long
    # 7 lines, 3 segments, 7 progress lines and "done"
    assert values["transcriptor_log_lines_total"] == 18
    assert values["transcriptor_jobs_running"] == 0
    assert values["process_resident_memory_bytes"] > 0
    assert "process_cpu_seconds_total" in values
    assert not any("job" in name.split("{")[-1] for name in values if "{" in name)  # no job ids


async def test_running_queued_and_cancelled(aiohttp_client, make_config, tone, tmp_path):
    gate = tmp_path / "gate"
    client = await aiohttp_client(create_app(make_config("--gate", str(gate), max_concurrent_jobs=1)))
    jobs = []
    for _ in range(2):
        form = aiohttp.FormData()
        form.add_field("file", tone.read_bytes(), filename="tone.wav")
        form.add_field("on_disconnect", "keep")
        jobs.append(await (await client.post("/api/jobs", data=form)).json())
    await wait_metric(client, "transcriptor_jobs_running", 1)
    assert (await scrape(client))["transcriptor_jobs_queued"] == 1
    await client.post(f"/api/jobs/{jobs[1]['id']}/stop")
    values = await wait_metric(client, 'transcriptor_jobs_finished_total{status="cancelled"}', 1)
    assert values["transcriptor_jobs_queued"] == 0
    gate.touch()
    await wait_metric(client, 'transcriptor_jobs_finished_total{status="completed"}', 1)


async def test_websocket_clients(aiohttp_client, make_config):
    client = await aiohttp_client(create_app(make_config()))
    async with client.ws_connect("/ws"), client.ws_connect("/ws"):
        await wait_metric(client, "transcriptor_websocket_clients", 2)
    await wait_metric(client, "transcriptor_websocket_clients", 0)


async def test_openai_jobs_are_labelled_by_source(aiohttp_client, make_config, tone):
    client = await aiohttp_client(create_app(make_config()))
    form = aiohttp.FormData()
    form.add_field("file", tone.read_bytes(), filename="tone.wav")
    form.add_field("model", "whisper-1")
    response = await client.post("/v1/audio/transcriptions", data=form)
    assert response.status == 200, await response.text()
    values = await scrape(client)
    assert values['transcriptor_jobs_submitted_total{source="api: openai"}'] == 1


async def test_token_protects_metrics_and_apps_do_not_collide(aiohttp_client, make_config, tmp_path):
    # Two apps in one process: each has its own registry.
    first = await aiohttp_client(create_app(make_config(token="s3cret")))
    second = await aiohttp_client(create_app(make_config(data_dir=tmp_path / "other")))
    refused = await first.get("/metrics")
    assert refused.status == 401
    assert "access token" in (await refused.json())["error"]
    assert "transcriptor_jobs_running" in await scrape(first, Authorization="Bearer s3cret")
    assert "transcriptor_jobs_running" in await scrape(second)


async def test_job_memory_is_the_samplers_bytes(aiohttp_client, make_config, tone, tmp_path):
    """transcriptor_jobs_memory_bytes is the sum of the samples' bytes, to the byte (it
    once multiplied MiB by 10**6 and read 4.6% low)."""
    gate = tmp_path / "gate"
    client = await aiohttp_client(create_app(make_config("--gate", str(gate), metrics_interval=0.3)))
    form = aiohttp.FormData()
    form.add_field("file", tone.read_bytes(), filename="tone.wav")
    form.add_field("on_disconnect", "keep")
    job = await (await client.post("/api/jobs", data=form)).json()

    async def sample() -> dict[str, Any] | None:
        return (await (await client.get(f"/api/jobs/{job['id']}")).json())["metrics"]

    async with asyncio.timeout(20):
        while True:
            # A sample, a scrape, and the same sample after it: the scrape read that sample.
            before = await sample()
            values = await scrape(client)
            if before and before["memory_bytes"] > 0 and before == await sample():
                break
            await asyncio.sleep(0.02)
    assert values["transcriptor_jobs_memory_bytes"] == before["memory_bytes"]
    assert isinstance(before["memory_bytes"], int)
    assert before["memory_mb"] == round(before["memory_bytes"] / 2**20, 1)  # MiB
    gate.touch()
    await wait_metric(client, 'transcriptor_jobs_finished_total{status="completed"}', 1)
    assert (await scrape(client))["transcriptor_jobs_memory_bytes"] == 0


async def test_a_job_whose_end_is_recorded_no_longer_counts_as_running(aiohttp_client, make_config, tone):
    """From the moment a job's ending is recorded (jobs_finished counts it), the running
    count and the running jobs' memory leave it out, though its run is still being let go."""
    app = create_app(make_config(metrics_interval=0.3))
    client = await aiohttp_client(app)
    runner = app[keys.RUNNER]
    seen: list[tuple[int, list[int]]] = []
    runner.on_ended(
        lambda _job: seen.append((runner.stats().running, [j.job_id for j in runner.live_jobs()]))
    )
    await run_job(client, tone, on_disconnect="keep")
    assert seen == [(0, [])]
