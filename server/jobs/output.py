"""A running job's output: pumped line by line to its log file and its channel.

The job is over when its program is: if processes it left behind hold the output open
after it exits, they get a moment, then they are stopped (Phase.DRAINING); the sequence
is `executors.drain`, shared with `transcriptor transcribe`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.protocol import Progress, Segment, parse_line
from server.executors.base import Executor, JobHandle
from server.executors.drain import drain
from server.jobs.joblog import JobLog
from server.jobs.state import Phase

if TYPE_CHECKING:
    from server.jobs.run import JobRun

log = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL = 1.0
PUMP_YIELD_SECONDS = 0.001
LEFTOVERS_NOTE = (
    "[transcriptor] the program exited, but processes it started still hold its output open; "
    "stopping them"
)


@dataclass
class LineCount:
    """Every job's output lines since start, for /metrics: a plain int (the pump is hot)."""

    value: int = 0


class OutputFollower:
    def __init__(
        self, run: JobRun, executor: Executor[Any], handle: JobHandle, joblog: JobLog, count: LineCount
    ) -> None:
        self.run = run
        self.executor = executor
        self.handle = handle
        self.joblog = joblog
        self.count = count
        self._progress: Progress | None = None

    async def follow(self) -> None:
        """Pump the job's output until it ends (see executors.drain), then save its last
        progress."""
        pump = asyncio.create_task(self._pump(), name=f"pump-{self.run.job_id}")
        try:
            await drain(self.executor, self.handle, pump, leftovers=self._stop_leftovers)
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        if self._progress is not None:
            await self.run.save_progress(self._progress)

    async def _stop_leftovers(self) -> None:
        if self.run.phase.phase is not Phase.RUNNING:
            return  # a cancel is already killing it
        self.run.phase.change(Phase.DRAINING)
        self.joblog.write(LEFTOVERS_NOTE)
        self.run.channel.publish_line(LEFTOVERS_NOTE, None)
        report = await self.executor.kill(self.handle, grace=self.run.kill_grace)
        log.info("job %s: leftovers after exit: %s", self.run.job_id, report.reason)

    async def _pump(self) -> None:
        run, channel = self.run, self.run.channel
        last_write = 0.0
        # Progress is written beside the pump, one write at a time: awaiting the database
        # here held this job's lines back 0.1-0.3 s each second while another job flooded
        # (the aiosqlite thread waits for the GIL the busy event loop thread holds).
        saving: asyncio.Task[None] | None = None
        last_yield = time.monotonic()
        try:
            async for line in self.executor.lines(self.handle):
                # StreamReader.read returns at once while data is buffered, so a child that
                # floods its output would keep this loop (and the whole event loop) busy;
                # hand the loop to the other jobs and sockets every millisecond.
                if time.monotonic() - last_yield >= PUMP_YIELD_SECONDS:
                    await asyncio.sleep(0)
                    last_yield = time.monotonic()
                self.joblog.write(line)
                self.count.value += 1
                event = parse_line(line)
                seq = channel.publish_line(line, event)
                run.heard()
                if isinstance(event, Progress):
                    self._progress = event
                    now = time.monotonic()
                    if now - last_write >= PROGRESS_WRITE_INTERVAL and (saving is None or saving.done()):
                        if saving is not None:
                            saving.result()  # a failed write fails the job, as it did inline
                        last_write = now
                        saving = asyncio.create_task(run.save_progress(event), name=f"progress-{run.job_id}")
                elif isinstance(event, Segment):
                    segment = {"seq": seq, "start": event.start, "end": event.end, "text": event.text}
                    run.segments.append(segment)
                elif line.strip():
                    run.last_line = line
                    if line.startswith("error:"):
                        run.last_error_line = line
        finally:
            if saving is not None:
                await saving
