"""Following one job for the HTTP request that is waiting on it (the OpenAI API)."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from pipeline.protocol import Segment
from server.jobs.channels import Offered, StatusChange, Subscriber
from server.jobs.state import JobStatus

# aiohttp offers no awaitable for a lost connection unless handler_cancellation is on,
# which would cut short every handler (an upload that already made its row); so the one
# kind of request that must notice looks at its transport this often.
LOST_POLL_SECONDS = 0.1


async def connection_lost(request: web.Request) -> None:
    """Return once the request's client has gone away."""
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(LOST_POLL_SECONDS)


@dataclass(eq=False)
class JobFollower(Subscriber):
    """A channel subscriber that keeps only the job's segments and its final status.

    Unbounded, unlike a websocket's queue: it holds a handful of segments, never log
    lines, and none may be dropped since they are the answer.
    """

    texts: deque[str] = field(default_factory=deque)
    status: str | None = None  # the final status, once the job ended
    job_id: int = 0

    def offer(
        self, job_id: int, encoded: str, next_seq: int, *, log_line: bool, event: Offered = None
    ) -> None:
        # The typed event the channel encoded: nothing to decode again.
        if log_line:
            return
        if isinstance(event, Segment):
            self.texts.append(event.text)
        elif isinstance(event, StatusChange) and JobStatus(event.status).is_final:
            self.status = event.status
        else:
            return
        self.job_id = job_id
        self.ready.set()

    async def segments(self, lost: asyncio.Task[None]) -> AsyncIterator[str]:
        """Each segment's text as it comes, until the job ends or the client leaves."""
        while True:
            while self.texts:
                yield self.texts.popleft()
            if self.status is not None or lost.done():
                return
            self.ready.clear()
            waiter = asyncio.ensure_future(self.ready.wait())
            try:
                await asyncio.wait({waiter, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    async def wait_end(self, lost: asyncio.Task[None]) -> None:
        async for _ in self.segments(lost):
            pass


def read_transcript(out_dir: Path, kind: str = "json") -> Any:
    """transcript.json as a dict, or the text of transcript.<kind>."""
    path = out_dir / f"transcript.{kind}"
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if kind == "json" else text
