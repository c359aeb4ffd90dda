"""Websocket abuse from outside: churn, abrupt disconnects, and messages nobody should send."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.helpers.raw_ws import raw_ws_open, ws_text_frame
from tests.helpers.server_proc import ServerProcess

CYCLES = 1000
JOBS = 10
CONCURRENCY = 20


async def frames(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10) -> list[dict[str, Any]]:
    frame = await ws.receive(timeout=timeout)
    if frame.type != aiohttp.WSMsgType.TEXT:
        raise ConnectionError(f"frame {frame.type!r} {frame.data!r} {frame.extra!r}")
    data = json.loads(frame.data)
    return data if isinstance(data, list) else [data]


async def until(ws: aiohttp.ClientWebSocketResponse, wanted: str, timeout: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            for message in await frames(ws, timeout):
                if message["type"] == wanted:
                    return message


async def raw_ws_abort(port: int, job_id: int) -> None:
    """Subscribe, read a little, then reset the TCP connection without any close frame:
    a browser tab killed mid-stream."""
    reader, writer = await raw_ws_open(port)
    writer.write(ws_text_frame({"type": "subscribe", "job": job_id}))
    await writer.drain()
    await reader.read(64)  # the status message starts arriving
    writer.transport.abort()  # RST, no close frame


async def churn_once(
    session: aiohttp.ClientSession, server: ServerProcess, i: int, job_ids: list[int]
) -> str:
    job_id = job_ids[i % len(job_ids)]
    style = i % 5
    if style == 0:
        await raw_ws_abort(server.port, job_id)
        return "reset"
    async with session.ws_connect(server.ws_url) as ws:
        if style == 1:
            return "connect-only"
        await ws.send_json({"type": "subscribe", "job": job_id})
        await until(ws, "status")
        if style == 2:
            await until(ws, "log")
            return "subscribe-read-close"
        if style == 3:
            await ws.send_json({"type": "unsubscribe", "job": job_id})
            await ws.send_json({"type": "ping"})
            await until(ws, "pong")
            return "unsubscribe"
        await ws.send_json({"type": "subscribe_jobs"})
        await until(ws, "jobs")
        return "feed"


def sample(server: ServerProcess) -> dict[str, float]:
    health = server.health()
    return {"fds": server.num_fds(), "rss_mb": server.rss_mb(), "tasks": health["tasks"]}


@pytest.mark.slow
async def test_thousand_connect_disconnect_cycles_leak_nothing_and_kill_nothing(start_server, tone, record):
    server = start_server(
        "--max-concurrent-jobs", str(JOBS), fake=["--lines", "1000000", "--interval", "0.1"]
    )
    jobs = []
    for i in range(JOBS):
        policy = "keep" if i < JOBS // 2 else "cancel"
        jobs.append(await asyncio.to_thread(server.upload, tone, on_disconnect=policy))
    job_ids = [j["id"] for j in jobs]
    keep_ids, cancel_ids = job_ids[: JOBS // 2], job_ids[JOBS // 2 :]
    for job_id in job_ids:
        await asyncio.to_thread(server.wait_running, job_id)
    began = time.monotonic()
    styles: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        # A cancel job stays wanted for as long as one client is still watching it.
        guardians = [await session.ws_connect(server.ws_url) for _ in cancel_ids]
        for ws, job_id in zip(guardians, cancel_ids, strict=True):
            await ws.send_json({"type": "subscribe", "job": job_id})
            await until(ws, "status")

        async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for _ in ws:
                pass

        drainers = [asyncio.create_task(drain(ws)) for ws in guardians]
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            async with sem:
                style = await churn_once(session, server, i, job_ids)
                styles[style] = styles.get(style, 0) + 1

        async with asyncio.timeout(120):
            await asyncio.gather(*(one(i) for i in range(50)))  # warm-up
            # Every churned socket closed, and the disconnect graces it started run out.
            await asyncio.to_thread(server.wait_disconnects_settled, len(guardians))
            baseline = sample(server)
            await asyncio.gather(*(one(i) for i in range(50, CYCLES)))
        churn_seconds = time.monotonic() - began
        await asyncio.to_thread(server.wait_disconnects_settled, len(guardians))
        after = sample(server)
        statuses = {j: (await asyncio.to_thread(server.job, j))["status"] for j in job_ids}
        assert all(s == "running" for s in statuses.values()), statuses

        # The guardians leave: now, and only now, the cancel jobs are abandoned.
        for ws in guardians:
            await ws.close()
        await asyncio.gather(*drainers, return_exceptions=True)
    for job_id in cancel_ids:
        final = await asyncio.to_thread(server.wait_final, job_id, 6)
        assert final["status"] == "cancelled", final
        assert final["cancel_reason"] == "all clients disconnected", final
    for job_id in keep_ids:
        assert (await asyncio.to_thread(server.job, job_id))["status"] == "running"
        response = await asyncio.to_thread(server.stop_job, job_id)
        assert response.status == 200
    record(
        cycles=CYCLES,
        styles=styles,
        churn_seconds=round(churn_seconds, 1),
        baseline=baseline,
        after=after,
    )
    assert after["fds"] <= baseline["fds"] + 3, (baseline, after)
    assert after["tasks"] <= baseline["tasks"] + 2, (baseline, after)
    assert after["rss_mb"] - baseline["rss_mb"] < 10, (baseline, after)


async def test_cross_origin_websocket_is_refused(start_server):
    server = start_server(fake=["--lines", "1"])
    async with aiohttp.ClientSession() as session:
        for origin in ("http://evil.example", "null", f"http://127.0.0.1:{server.port + 1}",
                       f"http://127.0.0.1.evil.example:{server.port}"):  # fmt: skip
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(server.ws_url, headers={"Origin": origin})
            assert refused.value.status == 403, origin
        async with session.ws_connect(
            server.ws_url, headers={"Origin": f"http://127.0.0.1:{server.port}"}
        ) as ws:
            await ws.send_json({"type": "ping"})
            assert (await until(ws, "pong"))["type"] == "pong"


async def test_malformed_unknown_and_oversized_messages(start_server, tone, record):
    server = start_server(fake=["--lines", "3"])
    job = await asyncio.to_thread(server.upload, tone, on_disconnect="keep")
    answers: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(server.ws_url) as ws:
            bad = {
                "malformed JSON": "{not json",
                "truncated JSON": '{"type": "subscribe", "job": ',
                "JSON array": "[1, 2, 3]",
                "JSON string": '"subscribe"',
                "no type": '{"job": 1}',
                "unknown type": '{"type": "rm -rf"}',
                "unknown job": '{"type": "subscribe", "job": 987654}',
                "job as string": '{"type": "subscribe", "job": "1"}',
                "job as bool": '{"type": "subscribe", "job": true}',
                "huge job id": '{"type": "subscribe", "job": 99999999999999999999999}',
                "negative since": f'{{"type": "subscribe", "job": {job["id"]}, "since": -5}}',
                "unsubscribe unknown": '{"type": "unsubscribe", "job": 424242}',
                "deep nesting": "[" * 5000 + "]" * 5000,
            }
            for what, text in bad.items():
                await ws.send_str(text)
                await ws.send_json({"type": "ping"})
                got = []
                async with asyncio.timeout(5):
                    while not any(m["type"] == "pong" for m in got):
                        got += await frames(ws)
                errors = [m for m in got if m["type"] == "error"]
                if what != "unsubscribe unknown":
                    assert errors, (what, got)
                    answers[what] = errors[0]["error"]
            await ws.send_bytes(b"\x00\x01binary")
            assert (await until(ws, "error"))["error"]
            # Still a working socket: a real subscribe gets the job's story.
            await ws.send_json({"type": "subscribe", "job": job["id"]})
            assert (await until(ws, "status"))["job"] == job["id"]

        async with session.ws_connect(server.ws_url, max_msg_size=0) as ws:
            await ws.send_str(json.dumps({"type": "ping", "pad": "x" * 200_000}))
            frame = await ws.receive(timeout=10)
            while frame.type == aiohttp.WSMsgType.TEXT:
                frame = await ws.receive(timeout=10)
            assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), frame
            answers["200 kB message"] = f"closed with code {ws.close_code}"
            assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG, ws.close_code
    assert server.health()["status"] == "ok"
    assert "Traceback" not in server.output(), server.output()[-3000:]
    record(answers=answers)
