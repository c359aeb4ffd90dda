"""Shutdown: websockets told GOING_AWAY, running jobs stopped (queued again to resume, or
cancelled), no child left."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSCloseCode

from server.app import create_app
from server.store import Store
from tests.helpers.app_api import upload, wait_for_line, wait_status
from tests.helpers.procs import alive_in_group


@pytest.mark.parametrize("resume", [True, False], ids=["resume", "no-resume"])
async def test_shutdown_closes_sockets_and_stops_jobs(aiohttp_client, make_config, tone, resume):
    config = make_config(
        "--lines", "10000", "--interval", "0.05", "--grandchildren", "1", resume_interrupted=resume
    )  # fmt: skip
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    queued_config_job = await (await upload(client, tone, on_disconnect="keep")).json()
    running = await wait_status(client, job["id"], {"running"})
    await wait_for_line(client, job["id"])
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "subscribe", "job": job["id"]})

    await client.server.close()  # runs on_shutdown and every cleanup context

    while (frame := await ws.receive(timeout=10)).type not in {
        aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING
    }:
        pass
    # The close frame's code (the client's own close_code turns 1006 once the reply fails).
    assert frame.type == aiohttp.WSMsgType.CLOSE and frame.data == WSCloseCode.GOING_AWAY
    assert alive_in_group(running["process_group_id"]) == []
    store = await Store.open(config.db_path)
    try:
        ended = await store.get_job(job["id"])
        assert ended is not None
        if resume:  # interrupted, not ended: the next start resumes it
            assert ended["status"] == "queued" and ended["process_id"] is None, ended
            assert "] interrupted at " in Path(ended["log_file_path"]).read_text()
        else:
            assert ended["status"] == "cancelled" and ended["cancel_reason"] == "server shutdown"
        other = await store.get_job(queued_config_job["id"])
        assert other is not None and other["status"] in {"queued", "cancelled"}
    finally:
        await store.close()
    await ws.close()
