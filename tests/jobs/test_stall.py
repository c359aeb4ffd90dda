"""The stall watchdog: a running job that prints nothing for --stall-timeout is stopped
like a stop and failed; a job that prints, however long it runs, is left alone."""

from __future__ import annotations

from server.app import create_app
from tests.helpers.app_api import upload, wait_status
from tests.helpers.procs import alive_in_group


async def test_a_silent_job_is_stopped_and_failed_as_stalled(aiohttp_client, make_config, tone):
    # --silent: prints nothing and sleeps, as a hung decoder would; --ignore-term: only the
    # kill after the grace ends it, as a stop's would.
    config = make_config("--silent", "--ignore-term", "--grandchildren", "1", stall_timeout=1.0)
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    running = await wait_status(client, job["id"], {"running"})
    failed = await wait_status(client, job["id"], {"failed", "cancelled", "completed"}, timeout=30)
    assert failed["status"] == "failed", failed
    assert failed["error_message"] == "stalled: no output for 1 s", failed
    assert failed["cancel_reason"] is None
    assert alive_in_group(running["process_group_id"]) == []
    logs = (await (await client.get(f"/api/jobs/{job['id']}/logs")).json())["lines"]
    assert logs[-1] == "[transcriptor] stalled: no output for 1 s; stopping it", logs


async def test_a_job_that_keeps_printing_is_never_stalled(aiohttp_client, make_config, tone):
    # Runs four times the timeout, printing every 0.1 s.
    config = make_config("--lines", "40", "--interval", "0.1", stall_timeout=1.0)
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    final = await wait_status(client, job["id"], {"failed", "cancelled", "completed"}, timeout=60)
    assert final["status"] == "completed", final


async def test_zero_turns_the_watchdog_off(aiohttp_client, make_config, tone):
    config = make_config("--start-delay", "2", "--lines", "2", stall_timeout=0.0)
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    final = await wait_status(client, job["id"], {"failed", "cancelled", "completed"}, timeout=60)
    assert final["status"] == "completed", final
