"""/api/health counts the events tests wait on: orphan passes, sockets, disconnect graces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.app import create_app
from tests.helpers.app_api import upload
from tests.helpers.health import health, health_until
from tests.helpers.wsclient import collect_until


async def start_job(client: Any, path: Path, **fields: str) -> dict[str, Any]:
    response = await upload(client, path, **fields)
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def test_orphan_passes_count_start_up_and_each_monitor_pass(aiohttp_client, make_config):
    client = await aiohttp_client(create_app(make_config(heartbeat_interval=0.1)))
    first = (await health(client))["orphan_passes"]
    assert first >= 1  # start-up's pass ends before the app serves
    await health_until(client, lambda body: body["orphan_passes"] >= first + 2)


async def test_a_grace_is_pending_then_expires_and_a_kept_job_runs_on(aiohttp_client, make_config, tone):
    config = make_config("--lines", "100000", "--interval", "0.05", disconnect_grace=0.3)
    client = await aiohttp_client(create_app(config))
    job = await start_job(client, tone, on_disconnect="keep")
    before = await health(client)
    assert (before["websockets"], before["disconnect_timers"], before["graces_expired"]) == (0, 0, 0)
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        await collect_until(ws, lambda m: m["type"] == "log")
        assert (await health(client))["websockets"] == 1
    # The socket's close is seen by the server a moment later; then its grace runs.
    await health_until(client, lambda body: body["websockets"] == 0)
    await health_until(client, lambda body: body["graces_expired"] == 1)
    body = await health(client)
    assert body["disconnect_timers"] == 0 and body["running"] == 1
    status = (await (await client.get(f"/api/jobs/{job['id']}")).json())["status"]
    assert status == "running"
    assert (await client.post(f"/api/jobs/{job['id']}/stop")).status == 200


async def test_a_grace_called_off_by_a_return_never_expires(aiohttp_client, make_config, tone):
    config = make_config("--lines", "100000", "--interval", "0.05", disconnect_grace=30)
    client = await aiohttp_client(create_app(config))
    job = await start_job(client, tone)
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        await collect_until(ws, lambda m: m["type"] == "log")
    await health_until(client, lambda body: body["disconnect_timers"] == 1)
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        await collect_until(ws, lambda m: m["type"] == "status")
        body = await health(client)
        assert (body["disconnect_timers"], body["graces_expired"]) == (0, 0)
        assert (await client.post(f"/api/jobs/{job['id']}/stop")).status == 200
