"""A running job's output: pumped line by line to its log file and its channel.

The job is over when its program is: if processes it left behind hold the output open
after it exits, they get a moment, then they are stopped (Phase.DRAINING).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from pipeline.protocol import Progress, Segment, parse_line
from server.executors.base import JobHandle
from server.jobs.joblog import JobLog
from server.jobs.state import Phase

if TYPE_CHECKING:
    from server.jobs.runner import Runner, RunningJob

log = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL = 1.0
PUMP_YIELD_SECONDS = 0.001
# How long output may keep flowing after the program itself has exited.
OUTPUT_DRAIN_SECONDS = 2.0


class OutputFollower:
    def __init__(self, runner: Runner, running: RunningJob, handle: JobHandle, joblog: JobLog) -> None:
        self.runner = runner
        self.running = running
        self.handle = handle
        self.joblog = joblog

    async def follow(self) -> None:
        """Pump the job's output until it ends. If the program exits while processes it
        left behind still hold its output open, they get a moment to finish, then they
        are stopped: a job is over when its program is, and nothing of it runs on."""
        output_ended = asyncio.Event()
        pump = asyncio.create_task(self._pump(output_ended), name=f"pump-{self.running.job_id}")
        exited = asyncio.create_task(
            self.runner.executor.exited(self.handle), name=f"exited-{self.running.job_id}"
        )
        ended = asyncio.create_task(output_ended.wait())
        try:
            await asyncio.wait({ended, exited, pump}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done() and exited.exception() is not None:
                raise exited.exception()  # type: ignore[misc]
            if not output_ended.is_set() and not pump.done() and not await self._ends_within(ended):
                if self.running.phase.phase is Phase.RUNNING:  # else a cancel is already killing it
                    self.running.phase.change(Phase.DRAINING)
                    note = (
                        "[transcriptor] the program exited, but processes it started still "
                        "hold its output open; stopping them"
                    )
                    self.joblog.write(note)
                    self.runner.channels.get(self.running.job_id).publish_line(note, None)
                    report = await self.runner.executor.kill(self.handle, grace=self.runner.config.kill_grace)
                    log.info("job %s: leftovers after exit: %s", self.running.job_id, report.reason)
                if not await self._ends_within(ended):
                    # Held by something we may not signal: let go of the pipe; the pump
                    # then reads to the end of what arrived and finishes its writes.
                    self.runner.executor.close_output(self.handle)
            await pump
        finally:
            for task in (pump, exited, ended):
                task.cancel()
            await asyncio.gather(pump, exited, ended, return_exceptions=True)

    @staticmethod
    async def _ends_within(ended: asyncio.Task[Any]) -> bool:
        done, _ = await asyncio.wait({ended}, timeout=OUTPUT_DRAIN_SECONDS)
        return bool(done)

    async def _pump(self, output_ended: asyncio.Event) -> None:
        channel = self.runner.channels.get(self.running.job_id)
        last_write = 0.0
        progress: Progress | None = None
        # Progress is written beside the pump, one write at a time: awaiting the database
        # here held this job's lines back 0.1-0.3 s each second while another job flooded
        # (the aiosqlite thread waits for the GIL the busy event loop thread holds).
        saving: asyncio.Task[None] | None = None
        last_yield = time.monotonic()
        try:
            async for line in self.runner.executor.lines(self.handle):
                # StreamReader.read returns at once while data is buffered, so a child that
                # floods its output would keep this loop (and the whole event loop) busy;
                # hand the loop to the other jobs and sockets every millisecond.
                if time.monotonic() - last_yield >= PUMP_YIELD_SECONDS:
                    await asyncio.sleep(0)
                    last_yield = time.monotonic()
                self.joblog.write(line)
                self.runner.log_lines += 1
                event = parse_line(line)
                seq = channel.publish_line(line, event)
                if isinstance(event, Progress):
                    progress = event
                    now = time.monotonic()
                    if now - last_write >= PROGRESS_WRITE_INTERVAL and (saving is None or saving.done()):
                        if saving is not None:
                            saving.result()  # a failed write fails the job, as it did inline
                        last_write = now
                        saving = asyncio.create_task(
                            self.runner.save_progress(self.running.job_id, event),
                            name=f"progress-{self.running.job_id}",
                        )
                elif isinstance(event, Segment):
                    self.running.segments.append(
                        {"seq": seq, "start": event.start, "end": event.end, "text": event.text}
                    )
                elif line.strip():
                    self.running.last_line = line
                    if line.startswith("error:"):
                        self.running.last_error_line = line
            output_ended.set()
        finally:
            if saving is not None:
                await saving
        if progress is not None:
            await self.runner.save_progress(self.running.job_id, progress)
