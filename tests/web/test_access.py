"""Who may get in: tokens, origins, and websocket messages from strangers."""

from __future__ import annotations

import aiohttp
import pytest

from server.app import create_app
from tests.helpers.app_api import upload, wait_status
from tests.helpers.wsclient import messages

TOKEN = "s3cret-token-for-tests"


async def test_no_token_configured_serves_loopback_openly(aiohttp_client, make_config):
    client = await aiohttp_client(create_app(make_config()))
    assert (await client.get("/api/health")).status == 200
    assert (await client.get("/")).status == 200


@pytest.mark.parametrize("path", ["/", "/api/jobs", "/api/health", "/jobs/1"])
async def test_token_required_everywhere(aiohttp_client, make_config, path):
    client = await aiohttp_client(create_app(make_config(token=TOKEN)))
    assert (await client.get(path)).status == 401
    assert (await client.get(path, headers={"Authorization": "Bearer wrong"})).status == 401
    response = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status in {200, 404}


async def test_websocket_needs_token(aiohttp_client, make_config):
    client = await aiohttp_client(create_app(make_config(token=TOKEN)))
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws")
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/ws?token=wrong")
    async with client.ws_connect(f"/ws?token={TOKEN}") as ws:
        await ws.send_json({"type": "ping"})
        assert (await messages(ws))[0]["type"] == "pong"


async def test_page_token_in_query_sets_cookie(aiohttp_client, make_config):
    client = await aiohttp_client(create_app(make_config(token=TOKEN)))
    response = await client.get(f"/?token={TOKEN}", allow_redirects=False)
    assert response.status == 303
    assert "token" not in response.headers["Location"]
    assert "transcriptor_token" in response.cookies
    assert (await client.get("/")).status == 200  # the cookie jar now carries it
    assert (await client.get("/api/jobs")).status == 200


async def test_cross_origin_stop_refused(aiohttp_client, make_config, tone):
    config = make_config("--lines", "10000", "--interval", "0.05")
    client = await aiohttp_client(create_app(config))
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    await wait_status(client, job["id"], {"running"})
    evil = {"Origin": "http://evil.example"}
    response = await client.post(f"/api/jobs/{job['id']}/stop", headers=evil)
    assert response.status == 403
    assert (await client.get(f"/api/jobs/{job['id']}")).status == 200
    assert (await (await client.get(f"/api/jobs/{job['id']}")).json())["status"] == "running"
    refused_upload = await client.post("/api/jobs", data=b"x", headers=evil)
    assert refused_upload.status == 403
    same = {"Origin": str(client.make_url("")).rstrip("/")}
    assert (await client.post(f"/api/jobs/{job['id']}/stop", headers=same)).status == 200


async def test_cross_origin_websocket_refused(aiohttp_client, make_config):
    client = await aiohttp_client(create_app(make_config()))
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403


async def test_malformed_websocket_messages_answered(aiohttp_client, make_config):
    client = await aiohttp_client(create_app(make_config()))
    async with client.ws_connect("/ws") as ws:
        for bad in ("{not json", "[1,2]", '{"type": 5}', '{"type": "dance"}',
                    '{"type": "subscribe", "job": "x"}', '{"type": "subscribe", "job": 424242}',
                    '{"type": "subscribe", "job": 1, "since": -4}'):
            await ws.send_str(bad)
            reply = (await messages(ws))[0]
            assert reply["type"] == "error" and reply["error"], bad
        await ws.send_bytes(b"\x00\x01")
        assert (await messages(ws))[0]["type"] == "error"
        await ws.send_json({"type": "ping"})
        assert (await messages(ws))[0]["type"] == "pong"


async def test_oversized_websocket_message_closes_cleanly(aiohttp_client, make_config):
    client = await aiohttp_client(create_app(make_config()))
    async with client.ws_connect("/ws") as ws:
        await ws.send_str('{"type":"ping","pad":"' + "x" * 200_000 + '"}')
        frame = await ws.receive(timeout=5)
        assert frame.type in {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED}
    assert (await client.get("/api/health")).status == 200


async def test_pages_send_no_referrer(aiohttp_client, make_config, tone):
    client = await aiohttp_client(create_app(make_config()))
    job = await (await upload(client, tone)).json()
    for path in ("/", f"/jobs/{job['id']}", "/jobs/999"):  # the last is the 404 page
        response = await client.get(path)
        assert response.content_type == "text/html", path
        assert response.headers.get("Referrer-Policy") == "no-referrer", path
    # With a token, where the address may carry ?token=, the page says the same.
    secured = await aiohttp_client(create_app(make_config(token=TOKEN)))
    page = await secured.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert page.status == 200
    assert page.headers.get("Referrer-Policy") == "no-referrer"
