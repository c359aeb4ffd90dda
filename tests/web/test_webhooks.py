"""Webhooks to a real receiver on 127.0.0.1: signed, retried with backoff on 5xx and
network errors, bounded, visible, kept across a restart; per-job URLs checked."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server.app import create_app
from tests.helpers.app_api import upload, wait_status
from tests.helpers.server_proc import free_port

FINAL = {"completed", "failed", "cancelled"}
SECRET = "s3cret-for-tests"


@dataclass
class Receiver:
    """Answers each POST with the next of `statuses` (then 200), recording what came."""

    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.received.append({"headers": dict(request.headers), "raw": raw, "path": request.path})
        self.arrived.set()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        return app


async def webhooks(client: Any, job_id: int) -> dict[str, Any]:
    return dict(await (await client.get(f"/api/jobs/{job_id}/webhooks")).json())


async def wait_deliveries(client: Any, job_id: int, states: set[str], timeout: float = 20) -> dict[str, Any]:
    """The job's webhooks once every delivery is in one of `states`."""
    async with asyncio.timeout(timeout):
        while True:
            body = await webhooks(client, job_id)
            if body["deliveries"] and all(d["state"] in states for d in body["deliveries"]):
                return body
            await asyncio.sleep(0.05)


async def run_job(client: Any, tone: Any, **fields: Any) -> dict[str, Any]:
    response = await upload(client, tone, **fields)
    assert response.status == 201, await response.text()
    return await wait_status(client, (await response.json())["id"], FINAL)


async def test_signed_delivery_of_the_final_state(aiohttp_client, aiohttp_server, make_config, tone):
    receiver = Receiver()
    server = await aiohttp_server(receiver.app())
    url = str(server.make_url("/hook"))
    client = await aiohttp_client(create_app(make_config(webhook_url=url, webhook_secret=SECRET)))
    job = await run_job(client, tone)
    body = await wait_deliveries(client, job["id"], {"delivered"})
    assert [(a["url"], a["status_code"], a["error"]) for a in body["attempts"]] == [(url, 200, None)]
    assert body["attempts"][0]["at"]
    (request,) = receiver.received
    headers, raw = request["headers"], request["raw"]
    timestamp = headers["X-Transcriptor-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    assert headers["X-Transcriptor-Signature"] == f"sha256={expected}"
    sent = json.loads(raw)
    assert sent["id"] == job["id"] and sent["status"] == "completed"
    assert sent["error_message"] is None and sent["duration_seconds"] == job["duration_seconds"]
    assert sent["transcript_urls"]["txt"].endswith(f"/api/jobs/{job['id']}/transcript.txt")


async def test_failing_twice_then_accepting(aiohttp_client, aiohttp_server, make_config, tone):
    receiver = Receiver(statuses=[500, 503])
    server = await aiohttp_server(receiver.app())
    url = str(server.make_url("/hook"))
    config = make_config("--exit-code", "2", webhook_url=url, webhook_backoff=0.05)
    client = await aiohttp_client(create_app(config))
    job = await run_job(client, tone)
    assert job["status"] == "failed"
    body = await wait_deliveries(client, job["id"], {"delivered"})
    assert [a["status_code"] for a in body["attempts"]] == [500, 503, 200]
    assert json.loads(receiver.received[-1]["raw"])["status"] == "failed"
    # Unsigned without a secret.
    assert "X-Transcriptor-Signature" not in receiver.received[-1]["headers"]


async def test_attempts_are_bounded_and_errors_recorded(aiohttp_client, make_config, tone):
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    config = make_config(webhook_url=url, webhook_backoff=0.02, webhook_attempts=3)
    client = await aiohttp_client(create_app(config))
    job = await run_job(client, tone)
    body = await wait_deliveries(client, job["id"], {"gave_up"})
    assert len(body["attempts"]) == 3
    assert all(a["status_code"] is None and "Connect" in a["error"] for a in body["attempts"])


async def test_a_client_error_is_not_retried(aiohttp_client, aiohttp_server, make_config, tone):
    receiver = Receiver(statuses=[404])
    server = await aiohttp_server(receiver.app())
    config = make_config(webhook_url=str(server.make_url("/gone")), webhook_backoff=0.02)
    client = await aiohttp_client(create_app(config))
    job = await run_job(client, tone)
    body = await wait_deliveries(client, job["id"], {"gave_up"})
    assert [a["status_code"] for a in body["attempts"]] == [404]


async def test_receiver_down_across_a_server_restart(aiohttp_client, aiohttp_server, make_config, tone):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    # Retries far apart: the delivery is still pending when the first server stops.
    config = make_config(webhook_url=url, webhook_backoff=1.0, webhook_attempts=10, webhook_timeout=1.0)
    client = await aiohttp_client(create_app(config))
    job = await run_job(client, tone)
    async with asyncio.timeout(20):
        while not (await webhooks(client, job["id"]))["attempts"]:
            await asyncio.sleep(0.05)
    await client.close()  # the first server is gone; its delivery waits in the database

    receiver = Receiver()
    await aiohttp_server(receiver.app(), port=port)
    again = await aiohttp_client(create_app(config))
    body = await wait_deliveries(again, job["id"], {"delivered"})
    assert body["attempts"][0]["error"] and body["attempts"][-1]["status_code"] == 200
    assert len(receiver.received) == 1
    assert json.loads(receiver.received[0]["raw"])["id"] == job["id"]


async def test_per_job_webhook_url_is_checked(aiohttp_client, aiohttp_server, make_config, tone):
    receiver = Receiver()
    server = await aiohttp_server(receiver.app())
    config = make_config()
    client = await aiohttp_client(create_app(config))
    for bad in (
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/hook",
        f"http://127.0.0.1:{config.port}/api/jobs",
        f"http://localhost:{config.port}/",
        "ftp://example.org/",
        "not a url",
    ):
        response = await upload(client, tone, webhook_url=bad)
        assert response.status == 400, bad
        assert "webhook_url" in (await response.json())["error"]
    own = str(server.make_url("/mine"))
    job = await run_job(client, tone, webhook_url=own)
    body = await wait_deliveries(client, job["id"], {"delivered"})
    assert [a["url"] for a in body["attempts"]] == [own]
    await client.close()

    allowed = await aiohttp_client(create_app(make_config(allow_local_webhooks=True)))
    response = await upload(allowed, tone, webhook_url="http://169.254.169.254/x")
    assert response.status == 201


async def test_a_job_ended_by_shutdown_gets_its_webhook(aiohttp_client, aiohttp_server, make_config, tone):
    receiver = Receiver()
    server = await aiohttp_server(receiver.app())
    # Not resumed at the next start (--no-resume-interrupted): the shutdown ends the job.
    config = make_config(
        "--lines", "100000", "--interval", "0.05", webhook_url=str(server.make_url("/h")),
        resume_interrupted=False,
    )  # fmt: skip
    client = await aiohttp_client(create_app(config))
    response = await upload(client, tone, on_disconnect="keep")
    job = await wait_status(client, (await response.json())["id"], {"running"})
    await client.close()  # shutdown cancels the job; its webhook is queued on the way out
    again = await aiohttp_client(create_app(config))
    body = await wait_deliveries(again, job["id"], {"delivered"})
    assert [a["status_code"] for a in body["attempts"]][-1] == 200
    sent = json.loads(receiver.received[-1]["raw"])
    assert (sent["id"], sent["status"], sent["cancel_reason"]) == (job["id"], "cancelled", "server shutdown")


async def test_per_job_url_is_checked_again_when_delivered(aiohttp_client, make_config, tone):
    # Accepted while the operator allowed it; refused at delivery once they no longer do.
    allowed = make_config(allow_local_webhooks=True, webhook_backoff=1.0, webhook_attempts=10)
    own = f"http://127.0.0.1:{allowed.port}/hook"
    client = await aiohttp_client(create_app(allowed))
    job = await run_job(client, tone, webhook_url=own)
    async with asyncio.timeout(20):
        while not (await webhooks(client, job["id"]))["attempts"]:
            await asyncio.sleep(0.05)
    await client.close()
    again = await aiohttp_client(create_app(make_config(webhook_backoff=1.0, webhook_attempts=10)))
    body = await wait_deliveries(again, job["id"], {"gave_up"})
    assert "refused: webhook_url points at this server itself" in body["attempts"][-1]["error"]


async def test_a_job_the_orphan_reaper_settles_gets_its_webhook(
    aiohttp_client, aiohttp_server, make_config, tmp_path
):
    from server.store import Store

    receiver = Receiver()
    server = await aiohttp_server(receiver.app())
    # Not resumed (--no-resume-interrupted): the orphan reaper ends it as failed at start-up.
    config = make_config(webhook_url=str(server.make_url("/h")), resume_interrupted=False)
    # A job a crashed instance left running: its process is gone (another boot's identity).
    store = await Store.open(config.db_path)
    try:
        job = await store.create_job(
            filename="lost.wav", original_path=str(tmp_path / "lost.wav"), duration_seconds=1.0,
            model="tiny.en", language="en", processes=1, threads=1, chunk_seconds=0, overlap_seconds=3,
        )  # fmt: skip
        instance = await store.register_instance(pid=1, start_ticks=1, boot_id="an-earlier-boot")
        await store.register_process(
            job["id"], pid=2**22 + 7, pgid=2**22 + 7, start_ticks=1, boot_id="an-earlier-boot",
            instance_id=instance,
        )  # fmt: skip
    finally:
        await store.close()
    client = await aiohttp_client(create_app(config))
    await wait_deliveries(client, job["id"], {"delivered"})
    sent = json.loads(receiver.received[-1]["raw"])
    assert sent["id"] == job["id"] and sent["status"] == "failed"
    assert sent["error_message"].startswith("orphaned")


async def test_many_deliveries_at_once_are_bounded_and_all_delivered(
    aiohttp_client, aiohttp_server, make_config
):
    from server import keys
    from server.jobs.webhooks import MAX_IN_FLIGHT

    arrived: list[int] = []
    release = asyncio.Event()
    in_flight = 0
    most = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        arrived.append(json.loads(await request.read())["id"])
        if len(arrived) >= MAX_IN_FLIGHT:
            release.set()  # every slot is taken: let them all answer
        await release.wait()
        in_flight -= 1
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/h", slow)
    server = await aiohttp_server(receiver)
    app = create_app(make_config(webhook_url=str(server.make_url("/h"))))
    client = await aiohttp_client(app)
    store = app[keys.STORE]
    ids = []
    for n in range(MAX_IN_FLIGHT + 4):
        job = await store.create_job(
            filename=f"{n}.wav", original_path=f"/x/{n}.wav", duration_seconds=1.0, model="tiny.en",
            language="en", processes=1, threads=1, chunk_seconds=0, overlap_seconds=3,
        )  # fmt: skip
        await store.cancel_job(job["id"], "test")
        ids.append(job["id"])
        app[keys.AFTERCARE].job_ended(job["id"])
    for job_id in ids:
        await wait_deliveries(client, job_id, {"delivered"})
    assert sorted(arrived) == ids
    assert most == MAX_IN_FLIGHT
