"""The job lifecycle: a queue, a number of slots, and one task per running job.

A running job's task starts the pipeline through the executor, pumps each stdout line to
the log file and the job's channel, then records how the job ended. Its phase (starting,
running, stopping, draining, ended) moves only through `PhaseMachine.change`. Cancelling
(stop, disconnect, shutdown) moves it to stopping and kills the process group; the job's
own task records the ending through `state.record_ending`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.protocol import Progress
from server.config import Config
from server.executors.base import Executor, JobHandle, RemoteJobHandle, job_marker
from server.jobs.argv import pipeline_argv
from server.jobs.channels import Channels
from server.jobs.joblog import JobLog
from server.jobs.observer import JobObserver, NoObserver
from server.jobs.output import OutputFollower
from server.jobs.state import (
    REASON_BEFORE_START,
    REASON_DISCONNECTED,
    REASON_SHUTDOWN,
    Ending,
    JobStatus,
    Phase,
    PhaseMachine,
    cancellation,
    decide_ending,
    failure,
    record_ending,
)
from server.procs.sampler import Sample
from server.store import Store

log = logging.getLogger(__name__)

# Shutdown's own allowance beyond the kill grace, after which what is left is SIGKILLed
# without waiting (uvicorn's graceful-shutdown deadline).
SHUTDOWN_MARGIN_SECONDS = 5.0


@dataclass(eq=False)
class RunningJob:
    job_id: int
    task: asyncio.Task[None] | None = None
    handle: JobHandle | None = None
    phase: PhaseMachine = field(default_factory=PhaseMachine)
    cancel_reason: str | None = None  # why it is stopping; set with Phase.STOPPING
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    metrics: Sample | None = None
    segments: list[dict[str, Any]] = field(default_factory=list)
    last_error_line: str | None = None
    last_line: str | None = None
    audio_seconds: float = 0.0  # the upload's duration, counted when the job completes

    @property
    def live_handle(self) -> JobHandle | None:
        """The handle while a process runs for the job (not while starting or ended)."""
        return self.handle if self.phase.has_process else None

    def stop(self, reason: str) -> bool:
        """Move to stopping with `reason`; False if it already is (the first reason stands)."""
        if self.cancel_reason is not None or self.phase.phase is Phase.ENDED:
            return False
        self.cancel_reason = reason
        if self.phase.phase is not Phase.STARTING:
            self.phase.change(Phase.STOPPING)
        return True




class Runner:
    def __init__(
        self,
        config: Config,
        store: Store,
        executor: Executor,
        channels: Channels,
        *,
        instance_id: str,
        observer: JobObserver | None = None,
    ) -> None:
        self.config = config
        self.observer: JobObserver = observer or NoObserver()
        self.log_lines = 0  # every job's output lines since start; read by /metrics
        self._submitted_at: dict[int, float] = {}
        self.store = store
        self.executor = executor
        self.channels = channels
        self.instance_id = instance_id
        self.queue: list[int] = []
        self.running: dict[int, RunningJob] = {}
        self._wakeup = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._disconnect_timers: dict[int, asyncio.Task[None]] = {}
        self.graces_expired = 0  # disconnect graces that ran out and were acted on
        self._closing = False

    # -- life of the runner ------------------------------------------------------------

    async def start(self) -> None:
        """Re-queue what a previous instance left queued, then start dispatching."""
        self.queue = [job["id"] for job in await self.store.queued_jobs()]
        self._dispatcher = asyncio.create_task(self._dispatch(), name="runner-dispatch")
        self._wakeup.set()

    async def shutdown(self) -> None:
        """Kill every running job (recorded as `server shutdown`); queued jobs stay queued.

        Bounded: past the kill grace plus a margin, what is left is SIGKILLed at once."""
        self._closing = True
        helpers = [t for t in [self._dispatcher, *self._disconnect_timers.values()] if t is not None]
        for helper in helpers:
            helper.cancel()
        # gather, not suppress(CancelledError): a cancel of shutdown itself still propagates.
        await asyncio.gather(*helpers, return_exceptions=True)
        self._disconnect_timers.clear()
        deadline = self.config.kill_grace + SHUTDOWN_MARGIN_SECONDS
        cancels = [
            asyncio.ensure_future(self.cancel(job_id, REASON_SHUTDOWN)) for job_id in list(self.running)
        ]
        if not cancels:
            return
        _done, late = await asyncio.wait(cancels, timeout=deadline)
        if late:
            log.warning("shutdown: %d job(s) still ending after %.1f s; killing now", len(late), deadline)
            handles = [r.handle for r in self.running.values() if r.handle is not None]
            await asyncio.gather(
                *(self.executor.kill(h, grace=0) for h in handles), return_exceptions=True
            )
            await asyncio.wait(late, timeout=SHUTDOWN_MARGIN_SECONDS)
            for pending in late:
                pending.cancel()
        await asyncio.gather(*cancels, return_exceptions=True)

    def submit(self, job_id: int, source: str) -> None:
        self.queue.append(job_id)
        self._submitted_at[job_id] = time.monotonic()
        self.observer.job_submitted(source)
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
            "metrics": running.metrics.fields() if running and running.metrics else None,
        }

    async def _dispatch(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self.queue and len(self.running) < self.config.max_concurrent_jobs:
                job_id = self.queue.pop(0)
                running = RunningJob(job_id)
                self.running[job_id] = running
                submitted = self._submitted_at.pop(job_id, None)
                self.observer.job_started(None if submitted is None else running.started - submitted)
                running.task = asyncio.create_task(self._run(running), name=f"job-{job_id}")
            await self._publish_queue_positions()

    async def _publish_queue_positions(self) -> None:
        for job_id in self.queue:
            job = await self.store.get_job(job_id)
            if job is not None:
                self.channels.publish_job(self.view(job))

    # -- one job -----------------------------------------------------------------------

    def adopt(self, job_id: int, follow: Callable[[RunningJob], Awaitable[None]]) -> None:
        """Take over a job a previous instance left running elsewhere (a cluster):
        `follow` drives it from where it is, like _run_job from the start."""
        running = RunningJob(job_id)
        self.running[job_id] = running
        running.task = asyncio.create_task(self._run(running, follow), name=f"job-{job_id}")

    async def _run(
        self, running: RunningJob, body: Callable[[RunningJob], Awaitable[None]] | None = None
    ) -> None:
        job_id = running.job_id
        try:
            await (body or self._run_job)(running)
        except Exception:
            log.exception("job %s: runner failed", job_id)
            # Kill first: a custom pipeline may not honour --lifeline, so releasing the
            # handle alone could leave its processes running with nobody watching them.
            if running.handle is not None:
                try:
                    await self.executor.kill(running.handle, grace=self.config.kill_grace)
                except Exception:
                    log.exception("job %s: killing after the runner failed", job_id)
            if running.phase.phase is not Phase.ENDED:
                await self._end(running, failure("internal error in the job runner"))
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
        running.audio_seconds = float(job.get("duration_seconds") or 0.0)
        out_dir = self.config.outputs_dir / str(job_id)
        out_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.config.logs_dir / f"job-{job_id}.log"
        joblog = JobLog(log_path, cap_bytes=self.config.log_cap_bytes)
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
                await self._end(running, failure(message))
                return
            running.handle = handle
            if isinstance(handle, RemoteJobHandle):
                # No local process: the row already names the remote job.
                registered = await self.store.register_remote(
                    job_id, instance_id=self.instance_id, log_file_path=str(log_path)
                )
            else:
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
                running.stop(REASON_BEFORE_START)
            if running.cancel_reason is not None:
                # Cancelled while starting: the cancel found no process yet, so kill here.
                running.phase.change(Phase.STOPPING)
                await self.executor.kill(handle, grace=self.config.kill_grace)
            else:
                running.phase.change(Phase.RUNNING)
            await self.announce(job_id)
            await OutputFollower(self, running, handle, joblog).follow()
            code = await self.executor.wait(handle)
        finally:
            joblog.close()
        await self._record_end(running, code)

    async def save_progress(self, job_id: int, progress: Progress) -> None:
        await self.store.set_progress(job_id, progress.fraction)
        job = await self.store.get_job(job_id)
        if job is not None:
            self.channels.publish_job(self.view(job))

    async def _record_end(self, running: RunningJob, code: int) -> None:
        detail = running.last_error_line or running.last_line
        # The kernel's OOM count, not a guess from the signal, says a memory limit did it.
        cause = self.executor.end_reason(running.handle) if running.handle else None
        ending = decide_ending(code, cancel_reason=running.cancel_reason, detail=detail, cause=cause)
        await self._end(running, ending)

    async def _end(self, running: RunningJob, ending: Ending) -> None:
        """Record the job's ending and tell everyone; the phase machine refuses a second."""
        running.phase.change(Phase.ENDED)
        if await record_ending(self.store, running.job_id, ending):
            self._observe_end(running, ending)
        await self.announce(running.job_id)

    def _observe_end(self, running: RunningJob, ending: Ending) -> None:
        try:
            audio = running.audio_seconds if ending.status is JobStatus.COMPLETED else 0.0
            self.observer.job_finished(ending.status, time.monotonic() - running.started, audio)
        except Exception:  # measuring must never break a job's ending; logged, not hidden
            log.exception("job %s: metrics observer failed", running.job_id)

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
            self._submitted_at.pop(job_id, None)
            cancelled = await record_ending(self.store, job_id, cancellation(reason))
            if cancelled:
                self.observer.job_finished(JobStatus.CANCELLED, None, 0.0)
            await self.announce(job_id)
            await self._publish_queue_positions()
            return cancelled
        running = self.running.get(job_id)
        if running is None:
            return False
        running.stop(reason)
        handle = running.live_handle
        if handle is not None:
            report = await self.executor.kill(handle, grace=self.config.kill_grace)
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

    @property
    def disconnect_timers(self) -> int:
        return len(self._disconnect_timers)

    async def _cancel_if_abandoned(self, job_id: int) -> None:
        try:
            await asyncio.sleep(self.config.disconnect_grace)
            if not self.channels.subscriber_count(job_id):
                job = await self.store.get_job(job_id)
                if job is not None and job["on_disconnect"] == "cancel":
                    # Popped before cancelling, so a subscriber arriving now cannot cancel us.
                    self._disconnect_timers.pop(job_id, None)
                    await self.cancel(job_id, REASON_DISCONNECTED)
            self.graces_expired += 1  # once decided: a test may then check the job's status
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
