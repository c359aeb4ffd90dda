"""GET /v1/realtime?intent=transcription: OpenAI's Realtime transcription over a websocket.

Each socket is one live session, and each session is a job (source `live`): the runner
starts the pipeline in its live mode (pipeline/live.py), which connects back to a unix
socket in the abstract namespace that this handler listens on for that job alone. The
client's audio goes down that socket; the pipeline's `[live]` lines come back through the
job's channel like any output and leave as OpenAI events (realtime_events.py).

The websocket is the job's lifeline. The client's close with code 1000 (or the idle
timeout) ends the audio stream: the pipeline finishes the utterance in progress and
exits 0, and the job completes. Any other end cancels the job at once: `client
disconnected`, or `server shutdown` when the server closed the socket going away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from pipeline.models import local_models
from server import keys
from server.jobs.channels import Offered, StatusChange, Subscriber
from server.jobs.state import REASON_CLIENT_DISCONNECTED, REASON_SHUTDOWN, JobStatus
from server.tasks import cancel_and_wait
from server.web.errors import ApiError
from server.web.realtime_events import (
    MAX_EVENT_CHARS,
    ClientError,
    SessionConfig,
    Translator,
    apply_update,
    decode_audio,
    parse_client_event,
)

log = logging.getLogger(__name__)

SOURCE = "live"
HEARTBEAT_SECONDS = 30.0
# Above MAX_EVENT_CHARS an event is refused with an error event; aiohttp itself closes
# the socket (1009) only past this, so an oversized frame does not end the session.
WS_MAX_MESSAGE_BYTES = 4 * MAX_EVENT_CHARS
# Audio kept while the job's pipeline starts (a cold start loads the model): 60 s.
PREBUFFER_BYTES = 60 * 24000 * 2
# After a normal close, the pipeline's time to finish its utterance and exit before the
# job is cancelled instead: a closed microphone's processes are gone within a second.
END_SECONDS = 1.0


@dataclass(eq=False)
class LiveFollower(Subscriber):
    """The job's `[live]` lines and its final status, unbounded (a handful a second,
    none of which may be dropped)."""

    lines: deque[str] = field(default_factory=deque)
    status: str | None = None

    def offer(
        self, job_id: int, encoded: str, next_seq: int, *, log_line: bool, event: Offered = None
    ) -> None:
        if log_line:
            if '"line":"[live] ' not in encoded:
                return
            self.lines.append(json.loads(encoded)["line"])
        elif isinstance(event, StatusChange) and JobStatus(event.status).is_final:
            self.status = event.status
        else:
            return
        self.ready.set()


def _abstract(address: str) -> str:
    return "\0" + address[1:]


class LiveSocket:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.app = request.app
        self.ws = ws
        self.config = self.app[keys.CONFIG]
        self.runner = self.app[keys.RUNNER]
        self.translator = Translator(0)
        self.follower = LiveFollower()
        self.session = SessionConfig(self.config.default_model)
        self.job_id = 0
        self.pipe: asyncio.StreamWriter | None = None
        self.prebuffer: list[bytes] = []
        self.prebuffered = 0
        self.audio_bytes = 0  # pcm16 at 24 kHz received: the job's duration at its end
        self.connected = asyncio.Event()  # the pipeline took its socket
        self.audio_seen = asyncio.Event()  # set by every append: the idle timer restarts
        self.graceful = False  # the session is ending well: the job may complete
        self.idle = False  # ended by the idle timeout (a normal end)
        self.reason = REASON_CLIENT_DISCONNECTED  # why the job is cancelled, if it is
        self.closing_by_server = False
        self._send_lock = asyncio.Lock()

    async def send(self, event: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        async with self._send_lock:
            with contextlib.suppress(ConnectionError):
                await self.ws.send_str(json.dumps(event, ensure_ascii=False))

    async def refuse(self, code: str, message: str) -> None:
        await self.send(self.translator.error(code, message, kind="server_error"))
        await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=code.encode())

    async def run(self) -> None:
        if self.config.executor != "local":
            await self.refuse("unsupported", "live sessions run on the local executor only")
            return
        if self.runner.free_slots() <= 0:
            await self.refuse("session_limit", "every job slot is busy; try again later")
            return
        address = f"@transcriptor-live-{uuid.uuid4().hex}"
        server = await asyncio.start_unix_server(self._connected, path=_abstract(address))
        try:
            job = await self._create_job(address)
            # Subscribed before the job is queued, so no line of it can slip past.
            self.app[keys.CHANNELS].subscribe(self.job_id, self.follower)
            self.runner.submit(job)
            session_id = f"sess_live_{self.job_id}"
            await self.send(
                self.translator.server_event(
                    "session.created", session=self.session.session(session_id, self.job_id)
                )
            )
            await self._session(session_id)
        finally:
            server.close()
            if self.job_id:
                # Shielded: a handler cancelled by its lost connection must still end the job.
                await asyncio.shield(self._end())

    async def _create_job(self, address: str) -> dict[str, Any]:
        config = self.config
        job = await self.app[keys.STORE].create_job(
            filename="live dictation",
            original_path=address,
            duration_seconds=None,
            model=config.default_model,
            language="auto",
            processes=1,
            threads=1,  # one thread per session: two sessions share this machine's cores
            chunk_seconds=0.0,
            overlap_seconds=0.0,
            on_disconnect="keep",  # a page following the job may close; the socket decides
            source=SOURCE,
            pipeline_options=json.dumps({"live": True}),
        )
        self.job_id = job["id"]
        self.translator.job_id = self.job_id
        return job

    async def _session(self, session_id: str) -> None:
        tasks = [
            asyncio.create_task(self._forward(), name=f"live-forward-{self.job_id}"),
            asyncio.create_task(self._watch_idle(), name=f"live-idle-{self.job_id}"),
        ]
        try:
            # Decided at once: the handler may be cancelled from here on (connection lost).
            self.graceful = await self._read(session_id) == WSCloseCode.OK or self.idle
            if self.closing_by_server and not self.graceful:
                self.reason = REASON_SHUTDOWN  # the app closes a socket itself only then
        finally:
            for task in tasks:
                await cancel_and_wait(task)

    # -- the pipeline's side -----------------------------------------------------------

    async def _connected(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.pipe is not None:  # one pipeline per session
            writer.close()
            return
        self.pipe = writer
        self._frame(b"S", json.dumps(self.session.for_pipeline()).encode())
        for frame in self.prebuffer:
            writer.write(frame)
        self.prebuffer.clear()
        self.connected.set()

    def _frame(self, kind: bytes, payload: bytes = b"") -> None:
        frame = kind + len(payload).to_bytes(4, "big") + payload
        if self.pipe is not None:
            self.pipe.write(frame)
        elif self.prebuffered + len(frame) <= PREBUFFER_BYTES:
            self.prebuffer.append(frame)
            self.prebuffered += len(frame)

    async def _forward(self) -> None:
        """The pipeline's events to the client, until the job ends."""
        follower = self.follower
        while True:
            while follower.lines:
                event = self.translator.from_pipeline(follower.lines.popleft())
                if event is not None:
                    await self.send(event)
            if follower.status is not None:
                break
            follower.ready.clear()
            await follower.ready.wait()
        if not self.ws.closed:
            job = await self.app[keys.STORE].get_job(self.job_id) or {}
            reason = job.get("error_message") or job.get("cancel_reason") or follower.status
            await self.send(
                self.translator.error(
                    "session_ended", f"the session's job ended: {reason}", kind="server_error"
                )
            )
            await self.ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"session ended")

    async def _watch_idle(self) -> None:
        timeout = self.config.live_idle_timeout
        await self.connected.wait()  # counted from when audio can reach the pipeline
        while True:
            self.audio_seen.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self.audio_seen.wait()
            except TimeoutError:
                break
        await self.send(
            self.translator.error("idle_timeout", f"no audio for {timeout:g} s; the session ends")
        )
        self.idle = True
        await self.ws.close(code=WSCloseCode.OK, message=b"idle timeout")

    # -- the client's side -------------------------------------------------------------

    async def _read(self, session_id: str) -> int | None:
        """Handle the client's events until the socket closes; the close code the client
        sent, or None when it did not close (the server did, or the connection dropped)."""
        while True:
            message = await self.ws.receive()
            if message.type == WSMsgType.CLOSE:
                return int(message.data)
            if message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                self.closing_by_server = message.type == WSMsgType.CLOSING
                return None
            if message.type != WSMsgType.TEXT:
                await self.send(self.translator.error("invalid_event", "send events as JSON text"))
                continue
            event: dict[str, Any] = {}
            try:
                event = parse_client_event(message.data)
                await self._handle(event, session_id)
            except ClientError as error:
                refused = self.translator.error(error.code, error.message, error.param)
                client_event_id = event.get("event_id")
                refused["error"]["event_id"] = client_event_id if isinstance(client_event_id, str) else None
                await self.send(refused)

    async def _handle(self, event: dict[str, Any], session_id: str) -> None:
        kind = event["type"]
        if kind == "input_audio_buffer.append":
            pcm = decode_audio(event)
            self.audio_bytes += len(pcm)
            self.audio_seen.set()
            if pcm:
                self._frame(b"A", pcm)
                if self.pipe is not None:
                    await self.pipe.drain()
        elif kind == "input_audio_buffer.commit":
            self._frame(b"C")
        elif kind == "input_audio_buffer.clear":
            self._frame(b"X")
        elif kind in ("session.update", "transcription_session.update"):
            models = set(await asyncio.to_thread(local_models))
            self.session = apply_update(self.session, event, models)
            self._frame(b"S", json.dumps(self.session.for_pipeline()).encode())
            await self.send(
                self.translator.server_event(
                    "session.updated", session=self.session.session(session_id, self.job_id)
                )
            )
        else:
            raise ClientError("invalid_event", f"unknown or unsupported event type {kind[:60]!r}", "type")

    # -- the end -----------------------------------------------------------------------

    async def _end(self) -> None:
        """End the job with the socket: completed after a normal close, else cancelled."""
        try:
            await self._end_job()
            duration = round(self.audio_bytes / (2 * 24000), 3)
            await self.app[keys.STORE].update_job(self.job_id, duration_seconds=duration)
        finally:
            self.app[keys.CHANNELS].unsubscribe(self.job_id, self.follower)
            if self.pipe is not None:
                self.pipe.close()

    async def _end_job(self) -> None:
        if self.follower.status is not None or not self.runner.is_active(self.job_id):
            return
        if self.graceful and self.pipe is not None:
            with contextlib.suppress(ConnectionError, OSError):
                self.pipe.write_eof()  # the pipeline finishes its utterance and exits 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(END_SECONDS):
                    while self.follower.status is None:
                        self.follower.ready.clear()
                        await self.follower.ready.wait()
        if self.follower.status is None:
            await self.runner.cancel(self.job_id, self.reason)


async def realtime(request: web.Request) -> web.WebSocketResponse:
    if request.query.get("intent") != "transcription":
        message = "only transcription sessions are served: connect with ?intent=transcription"
        raise ApiError(400, message, param="intent")
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS, max_msg_size=WS_MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    sockets = request.app[keys.SOCKETS]
    sockets.add(ws)
    try:
        await LiveSocket(request, ws).run()
    finally:
        sockets.discard(ws)
        if not ws.closed:
            await ws.close()
    return ws
