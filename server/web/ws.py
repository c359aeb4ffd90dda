"""The /ws endpoint: subscribe to job channels and the job list, over one socket.

Each socket is a `Subscriber` with its own bounded queue and its own writer task, so a
slow reader only ever delays itself. When several messages are waiting, the writer sends
them as one JSON array frame, which keeps a 10k lines/s job cheap to follow.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from server import keys
from server.jobs.channels import Subscriber, encode, status_message
from server.jobs.replay import finished_replay
from server.jobs.state import JobStatus
from server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
MAX_BATCH = 500
FRAME_INTERVAL = 0.005  # seconds; at most one frame per socket this often
SEND_TIMEOUT = 30.0
HEARTBEAT_SECONDS = 20.0


def _error(text: str) -> str:
    return encode({"type": "error", "error": text})


async def _write(ws: web.WebSocketResponse, subscriber: Subscriber) -> None:
    while True:
        batch = await subscriber.take(MAX_BATCH)
        frame = batch[0] if len(batch) == 1 else "[" + ",".join(batch) + "]"
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps each send in a task.
            async with asyncio.timeout(SEND_TIMEOUT):
                await ws.send_str(frame)
        except (TimeoutError, ConnectionError, RuntimeError):
            # A peer that has not read for SEND_TIMEOUT is gone or stuck: let it go.
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"client too slow")
            return
        # Let a stream gather for a moment: a lone message still goes out at once, but a
        # busy job's lines leave in one frame per FRAME_INTERVAL, not one per read. Frames,
        # not lines, are what cost the server and the browser (benchmarks/RESULTS.md).
        await asyncio.sleep(FRAME_INTERVAL)


def _room_for_replay(subscriber: Subscriber) -> tuple[int, int]:
    # Leaves room for the gap messages a replay may add around what it sends.
    count, size = subscriber.room()
    return count - 2, size - 512


class Session:
    def __init__(self, request: web.Request, subscriber: Subscriber) -> None:
        self.app = request.app
        self.subscriber = subscriber

    async def handle(self, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            self.subscriber.send_direct(_error("a message is a JSON object with a 'type'"))
            return
        kind = data["type"]
        if kind == "subscribe":
            await self.subscribe(data)
        elif kind == "unsubscribe":
            job_id = data.get("job")
            if isinstance(job_id, int):
                self.app[keys.CHANNELS].unsubscribe(job_id, self.subscriber)
        elif kind == "subscribe_jobs":
            await self.follow_jobs()
        elif kind == "ping":
            self.subscriber.send_direct(encode({"type": "pong"}))
        else:
            self.subscriber.send_direct(_error(f"unknown message type {kind[:40]!r}"))

    async def subscribe(self, data: dict[str, Any]) -> None:
        job_id, since = data.get("job"), data.get("since", 0)
        if not isinstance(job_id, int) or isinstance(job_id, bool):
            self.subscriber.send_direct(_error("subscribe needs an integer 'job'"))
            return
        if since is None:
            since = 0
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            self.subscriber.send_direct(_error("'since' must be a whole number ≥ 0"))
            return
        # Outside SQLite's integer range the query itself would raise (OverflowError).
        job = await self.app[keys.STORE].get_job(job_id) if 0 < job_id < 2**63 else None
        if job is None:
            self.subscriber.send_direct(_error(f"no job {str(job_id)[:30]}"))
            return
        runner, channels = self.app[keys.RUNNER], self.app[keys.CHANNELS]
        if not runner.is_active(job_id) and not JobStatus(job["status"]).is_final:
            # The job ended while its row was read: that row is stale, and its final status
            # went out before we subscribed. The runner records the end before letting the
            # job go, so the row read now is final (issue #14).
            job = await self.app[keys.STORE].get_job(job_id) or job
        channel = channels.find(job_id)
        if channel is None and not runner.is_active(job_id):
            # Never a channel for a job the runner does not hold: nothing would publish on
            # it, so its subscriber would never hear the end.
            self.subscriber.send_direct(encode(status_message(runner.view(job))))
            log_path = job.get("log_file_path")
            room = _room_for_replay(self.subscriber)
            for message in await asyncio.to_thread(finished_replay, job_id, log_path, since, room):
                self.subscriber.send_direct(message)
            return
        # From here to the end nothing awaits, so no line slips between replay and live.
        channel = channels.subscribe(job_id, self.subscriber)
        self.subscriber.send_direct(encode(status_message(runner.view(job))))
        replay, missed = channel.replay_since(since, _room_for_replay(self.subscriber))
        if missed:
            gap = {"type": "gap", "job": job_id, "missed": missed, "next_seq": since + missed + 1}
            self.subscriber.send_direct(encode(gap))
        for message in replay:
            self.subscriber.send_direct(message)

    async def follow_jobs(self) -> None:
        runner = self.app[keys.RUNNER]
        jobs = await self.app[keys.STORE].list_jobs()
        self.subscriber.send_direct(encode({"type": "jobs", "jobs": [runner.view(j) for j in jobs]}))
        self.app[keys.CHANNELS].follow_jobs(self.subscriber)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    sockets = request.app[keys.SOCKETS]
    sockets.add(ws)
    subscriber = Subscriber()
    session = Session(request, subscriber)
    writer = asyncio.create_task(_write(ws, subscriber), name="ws-writer")
    try:
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                subscriber.send_direct(_error("send JSON text messages"))
                continue
            try:
                data = json.loads(message.data)
            except (ValueError, RecursionError):  # deep nesting ("[[[[...") is a RecursionError
                subscriber.send_direct(_error("malformed JSON"))
                continue
            try:
                await session.handle(data)
            except Exception:
                # The socket is already upgraded: the error middleware cannot answer it with
                # a page, so the fault is logged and the client told, and the socket lives on.
                log.exception("websocket message %.100r failed", message.data)
                subscriber.send_direct(_error("internal server error"))
    finally:
        request.app[keys.CHANNELS].unsubscribe_all(subscriber)
        sockets.discard(ws)
        await cancel_and_wait(writer)
    return ws
