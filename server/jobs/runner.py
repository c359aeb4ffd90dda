"""The job lifecycle: a queue, a number of slots, and one task per running job.

A running job's task starts the pipeline through the executor, pumps each stdout line to
the log file and the job's channel, then records how the job ended. Cancelling (stop,
disconnect, shutdown) kills the process group; the job's own task records the ending, so
there is exactly one writer of a job's final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.protocol import Progress, Segment, parse_line
from server.config import Config
from server.executors.base import Executor, JobHandle, job_marker
from server.jobs.channels import Channels
from server.jobs.joblog import JobLog
from server.jobs.state import REASON_DISCONNECTED, REASON_SHUTDOWN, JobStatus
from server.store import Store

log = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL = 1.0
PUMP_YIELD_SECONDS = 0.001
# How long output may keep flowing after the program itself has exited.
OUTPUT_DRAIN_SECONDS = 2.0


@dataclass(eq=False)
class RunningJob:
    job_id: int
    task: asyncio.Task[None] | None = None
    handle: JobHandle | None = None
    cancel_reason: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    metrics: dict[str, Any] | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)
    last_error_line: str | None = None
    last_line: str | None = None


def pipeline_argv(config: Config, job: dict[str, Any], out_dir: Path) -> list[str]:
    """The pipeline's command line; options a job has no value for (rows an older
    install left queued) fall back to the pipeline's own defaults."""
    command = list(config.pipeline_command) or [sys.executable, "-m", "pipeline"]
    argv = [*command, str(job["original_path"]), "--out-dir", str(out_dir)]
    for column in ("model", "language", "processes", "threads", "chunk_seconds", "overlap_seconds"):
        if job.get(column) not in (None, ""):
            argv += ["--" + column.replace("_", "-"), str(job[column])]
    return [*argv, "--lifeline"]


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Runner:
    def __init__(
        self,
        config: Config,
        store: Store,
        executor: Executor,
        channels: Channels,
        *,
        instance_id: str,
    ) -> None:
        self.config = config
        self.store = store
        self.executor = executor
        self.channels = channels
        self.instance_id = instance_id
        self.queue: list[int] = []
        self.running: dict[int, RunningJob] = {}
        self._wakeup = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._disconnect_timers: dict[int, asyncio.Task[None]] = {}
        self._closing = False

    # -- life of the runner ------------------------------------------------------------

    async def start(self) -> None:
        """Re-queue what a previous instance left queued, then start dispatching."""
        self.queue = [job["id"] for job in await self.store.queued_jobs()]
        self._dispatcher = asyncio.create_task(self._dispatch(), name="runner-dispatch")
        self._wakeup.set()

    async def shutdown(self) -> None:
        """Kill every running job (recorded as `server shutdown`); queued jobs stay queued."""
        self._closing = True
        for task in [self._dispatcher, *self._disconnect_timers.values()]:
            if task is not None:
                task.cancel()
        for task in [self._dispatcher, *self._disconnect_timers.values()]:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._disconnect_timers.clear()
        await asyncio.gather(
            *(self.cancel(job_id, REASON_SHUTDOWN) for job_id in list(self.running)),
            return_exceptions=True,
        )

    def submit(self, job_id: int) -> None:
        self.queue.append(job_id)
        self._wakeup.set()

    def queue_position(self, job_id: int) -> int | None:
        try:
            return self.queue.index(job_id) + 1
        except ValueError:
            return None

    def view(self, job: dict[str, Any]) -> dict[str, Any]:
        """The job as the API and the pages show it: the row plus live facts."""
        running = self.running.get(job["id"])
        return {
            **job,
            "queue_position": self.queue_position(job["id"]),
            "metrics": running.metrics if running else None,
        }

    async def _dispatch(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self.queue and len(self.running) < self.config.max_concurrent_jobs:
                job_id = self.queue.pop(0)
                running = RunningJob(job_id)
                self.running[job_id] = running
                running.task = asyncio.create_task(self._run(running), name=f"job-{job_id}")
            await self._publish_queue_positions()

    async def _publish_queue_positions(self) -> None:
        for job_id in self.queue:
            job = await self.store.get_job(job_id)
            if job is not None:
                self.channels.publish_job(self.view(job))

    # -- one job -----------------------------------------------------------------------

    async def _run(self, running: RunningJob) -> None:
        job_id = running.job_id
        try:
            await self._run_job(running)
        except Exception:
            log.exception("job %s: runner failed", job_id)
            await self.store.fail_job(job_id, "internal error in the job runner")
            await self.announce(job_id)
        finally:
            if running.handle is not None:
                self.executor.release(running.handle)
            del self.running[job_id]
            running.done.set()
            if not self.channels.subscriber_count(job_id):
                self.channels.drop(job_id)
            if not self._closing:
                self._wakeup.set()

    async def _run_job(self, running: RunningJob) -> None:
        job_id = running.job_id
        job = await self.store.get_job(job_id)
        if job is None or job["status"] != JobStatus.QUEUED:
            return
        out_dir = self.config.outputs_dir / str(job_id)
        out_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.config.logs_dir / f"job-{job_id}.log"
        joblog = JobLog(log_path, cap_bytes=int(self.config.log_cap_mb * 1_000_000))
        await self.store.update_job(job_id, log_file_path=str(log_path), output_path=str(out_dir))
        channel = self.channels.get(job_id)
        try:
            argv = pipeline_argv(self.config, job, out_dir)
            marker = job_marker(self.store.install_id, job_id)
            try:
                handle = await self.executor.start(job_id, argv, marker=marker)
            except OSError as error:
                message = f"failed to start: {error}"
                joblog.write(f"[transcriptor] {message}")
                channel.publish_line(f"[transcriptor] {message}", None)
                await self.store.fail_job(job_id, message)
                await self.announce(job_id)
                return
            running.handle = handle
            registered = await self.store.register_process(
                job_id,
                pid=handle.pid,
                pgid=handle.pgid,
                start_ticks=handle.identity.start_ticks,
                boot_id=handle.identity.boot_id,
                instance_id=self.instance_id,
                log_file_path=str(log_path),
            )
            if not registered:
                running.cancel_reason = running.cancel_reason or "cancelled before start"
                await self.executor.kill(handle, grace=self.config.kill_grace)
            elif running.cancel_reason is not None:
                # Cancelled while starting: the cancel found no handle yet, so kill here.
                await self.executor.kill(handle, grace=self.config.kill_grace)
            await self.announce(job_id)
            await self._follow(running, handle, joblog)
            code = await self.executor.wait(handle)
        finally:
            joblog.close()
        await self._record_end(running, code)

    async def _follow(self, running: RunningJob, handle: JobHandle, joblog: JobLog) -> None:
        """Pump the job's output until it ends. If the program exits while processes it
        left behind still hold its output open, they get a moment to finish, then they
        are stopped: a job is over when its program is, and nothing of it runs on."""
        output_ended = asyncio.Event()
        pump = asyncio.create_task(
            self._pump(running, handle, joblog, output_ended), name=f"pump-{running.job_id}"
        )
        exited = asyncio.create_task(self.executor.exited(handle), name=f"exited-{running.job_id}")
        ended = asyncio.create_task(output_ended.wait())
        try:
            await asyncio.wait({ended, exited, pump}, return_when=asyncio.FIRST_COMPLETED)
            if exited.done() and exited.exception() is not None:
                raise exited.exception()  # type: ignore[misc]
            if not output_ended.is_set() and not pump.done() and not await self._ends_within(ended):
                if running.cancel_reason is None:  # a cancel is already killing the group
                    note = (
                        "[transcriptor] the program exited, but processes it started still "
                        "hold its output open; stopping them"
                    )
                    joblog.write(note)
                    self.channels.get(running.job_id).publish_line(note, None)
                    report = await self.executor.kill(handle, grace=self.config.kill_grace)
                    log.info("job %s: leftovers after exit: %s", running.job_id, report.reason)
                if not await self._ends_within(ended):
                    # Held by something we may not signal: let go of the pipe; the pump
                    # then reads to the end of what arrived and finishes its writes.
                    self.executor.close_output(handle)
            await pump
        finally:
            for task in (pump, exited, ended):
                task.cancel()
            await asyncio.gather(pump, exited, ended, return_exceptions=True)

    @staticmethod
    async def _ends_within(ended: asyncio.Task[Any]) -> bool:
        done, _ = await asyncio.wait({ended}, timeout=OUTPUT_DRAIN_SECONDS)
        return bool(done)

    async def _pump(
        self, running: RunningJob, handle: JobHandle, joblog: JobLog, output_ended: asyncio.Event
    ) -> None:
        channel = self.channels.get(running.job_id)
        last_write = 0.0
        progress: Progress | None = None
        # Progress is written beside the pump, one write at a time: awaiting the database
        # here held this job's lines back 0.1-0.3 s each second while another job flooded
        # (the aiosqlite thread waits for the GIL the busy event loop thread holds).
        saving: asyncio.Task[None] | None = None
        last_yield = time.monotonic()
        try:
            async for line in self.executor.lines(handle):
                # StreamReader.read returns at once while data is buffered, so a child that
                # floods its output would keep this loop (and the whole event loop) busy;
                # hand the loop to the other jobs and sockets every millisecond.
                if time.monotonic() - last_yield >= PUMP_YIELD_SECONDS:
                    await asyncio.sleep(0)
                    last_yield = time.monotonic()
                joblog.write(line)
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
                            self._save_progress(running.job_id, event),
                            name=f"progress-{running.job_id}",
                        )
                elif isinstance(event, Segment):
                    running.segments.append(
                        {"seq": seq, "start": event.start, "end": event.end, "text": event.text}
                    )
                elif line.strip():
                    running.last_line = line
                    if line.startswith("error:"):
                        running.last_error_line = line
            output_ended.set()
        finally:
            if saving is not None:
                await saving
        if progress is not None:
            await self._save_progress(running.job_id, progress)

    async def _save_progress(self, job_id: int, progress: Progress) -> None:
        await self.store.set_progress(job_id, progress.fraction)
        job = await self.store.get_job(job_id)
        if job is not None:
            self.channels.publish_job(self.view(job))

    async def _record_end(self, running: RunningJob, code: int) -> None:
        job_id = running.job_id
        if running.cancel_reason is not None:
            await self.store.cancel_job(job_id, running.cancel_reason, exit_code=code)
        elif code == 0:
            await self.store.complete_job(job_id, exit_code=code)
        else:
            detail = running.last_error_line or running.last_line
            message = describe_exit(code) + (f": {detail}" if detail else "")
            # The kernel's OOM count, not a guess from the signal, says the limit did it.
            limit = self.executor.end_reason(running.handle) if running.handle else None
            if limit is not None:
                message = f"{limit}; {message}"
            await self.store.fail_job(job_id, message, exit_code=code)
        await self.announce(job_id)

    async def announce(self, job_id: int) -> None:
        """Tell the job's channel and the job list what the row now says."""
        job = await self.store.get_job(job_id)
        if job is None:
            return
        view = self.view(job)
        channel = self.channels.find(job_id)
        if channel is not None:
            channel.publish(status_message(view))
        self.channels.publish_job(view)

    # -- cancelling --------------------------------------------------------------------

    async def cancel(self, job_id: int, reason: str) -> bool:
        """Cancel a queued or running job; True once it is cancelled by this call."""
        if job_id in self.queue:
            self.queue.remove(job_id)
            cancelled = await self.store.cancel_job(job_id, reason)
            await self.announce(job_id)
            await self._publish_queue_positions()
            return cancelled
        running = self.running.get(job_id)
        if running is None:
            return False
        if running.cancel_reason is None:
            running.cancel_reason = reason
        if running.handle is not None:
            report = await self.executor.kill(running.handle, grace=self.config.kill_grace)
            log.info("job %s: %s (%s)", job_id, report.reason, reason)
        await running.done.wait()
        job = await self.store.get_job(job_id)
        return job is not None and job["status"] == JobStatus.CANCELLED

    def client_left(self, job_id: int) -> None:
        """The last subscriber left: cancel after the grace unless someone comes back."""
        if self._closing or job_id in self._disconnect_timers:
            return
        if job_id not in self.running and job_id not in self.queue:
            self.channels.drop(job_id)
            return
        timer = asyncio.create_task(self._cancel_if_abandoned(job_id), name=f"grace-{job_id}")
        self._disconnect_timers[job_id] = timer

    def client_joined(self, job_id: int) -> None:
        timer = self._disconnect_timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    async def _cancel_if_abandoned(self, job_id: int) -> None:
        try:
            await asyncio.sleep(self.config.disconnect_grace)
            if self.channels.subscriber_count(job_id):
                return
            job = await self.store.get_job(job_id)
            if job is None or job["on_disconnect"] != "cancel":
                return
            # Popped before cancelling, so a subscriber arriving now cannot cancel us.
            self._disconnect_timers.pop(job_id, None)
            await self.cancel(job_id, REASON_DISCONNECTED)
        finally:
            if self._disconnect_timers.get(job_id) is asyncio.current_task():
                del self._disconnect_timers[job_id]

    # -- reading a job's results -------------------------------------------------------

    def live_segments(self, job_id: int) -> list[dict[str, Any]] | None:
        running = self.running.get(job_id)
        return list(running.segments) if running else None


def status_message(view: dict[str, Any]) -> dict[str, Any]:
    keys = ("status", "progress", "exit_code", "error_message", "cancel_reason", "queue_position")
    return {"type": "status", "job": view["id"], **{key: view.get(key) for key in keys}}


def saved_segments(out_dir: Path) -> list[dict[str, Any]]:
    """Segments of a finished job from its transcript (or the partial one a stop leaves)."""
    for name in ("transcript.json", "transcript.partial.json"):
        path = out_dir / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            return [
                {"start": s.get("start"), "end": s.get("end"), "text": s.get("text", "").strip()}
                for s in data.get("segments", [])
            ]
    return []
