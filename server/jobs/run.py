"""One job's run, start -> output -> end: the one owner of a running job.

A `JobRun` is given what it uses (the config, the store, the executor, the job's channel,
the job-list feed, the observer) and nothing of the runner. It starts the program, pumps
its output (jobs/output.py), waits for its exit and records the ending. A fresh start, a
re-attach to a job a cluster kept running (jobs/reattach.py) and a resume all go through
`follow`. Its phase moves only through `PhaseMachine.change`; a stop is one move to
stopping with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.protocol import Progress
from server.config import Config
from server.executors.base import Executor, Exit, ExitCause, JobHandle, job_marker
from server.jobs.argv import pipeline_argv
from server.jobs.channels import Channel, status_message
from server.jobs.joblog import JobLog, job_log_path, open_job_log, reopen_job_log
from server.jobs.observer import JobObserver
from server.jobs.output import LineCount, OutputFollower
from server.jobs.replay import kept_for_resume, logged_segments
from server.jobs.state import (
    REASON_BEFORE_START,
    REASON_SHUTDOWN,
    STALLED_PREFIX,
    Ending,
    JobStatus,
    Phase,
    PhaseMachine,
    decide_ending,
    failure,
    record_ending,
    resumable,
)
from server.procs.sampler import Sample

if TYPE_CHECKING:
    from server.store import Store

log = logging.getLogger(__name__)


class JobRun:
    def __init__(
        self,
        job_id: int,
        *,
        config: Config,
        store: Store,
        executor: Executor[Any],
        channel: Channel,
        feed: Callable[[dict[str, Any]], None],
        observer: JobObserver,
        instance_id: str,
        line_count: LineCount,
        on_ended: Callable[[int], None],
    ) -> None:
        self.job_id = job_id
        self.config = config
        self.store = store
        self.executor = executor
        self.channel = channel
        self._feed = feed  # the job list's feed (Channels.publish_job)
        self._observer = observer
        self.instance_id = instance_id
        self._line_count = line_count
        self._on_ended = on_ended
        self.phase = PhaseMachine()
        self.handle: JobHandle | None = None
        self._following = False  # its program is followed: a cancel may kill it itself
        self.done = asyncio.Event()
        self.started = time.monotonic()
        self.last_output = self.started  # when it last printed a line (the stall watchdog)
        self.metrics: Sample | None = None
        self.segments: list[dict[str, Any]] = []
        self.last_error_line: str | None = None
        self.last_line: str | None = None
        self.audio_seconds = 0.0  # the upload's duration, counted when the job completes
        self._stalled: str | None = None  # why the watchdog stopped it, once it has

    @property
    def kill_grace(self) -> float:
        return self.config.kill_grace

    @property
    def stop_reason(self) -> str | None:
        return self.phase.stop_reason

    @property
    def live_handle(self) -> JobHandle | None:
        """The handle while a process runs for the job (not while starting or ended)."""
        return self.handle if self._following and self.phase.has_process else None

    def heard(self) -> None:
        self.last_output = time.monotonic()

    # -- the run's task ------------------------------------------------------------------

    async def drive(self, body: Callable[[JobRun], Awaitable[None]]) -> None:
        """Run `body` (start, or follow again); whatever it leaves undone is ended here:
        a runner failure kills the job and fails it, and the handle is always released."""
        try:
            await body(self)
        except Exception:
            log.exception("job %s: runner failed", self.job_id)
            # Kill first: a custom pipeline may not honour --lifeline, so releasing the
            # handle alone could leave its processes running with nobody watching them.
            if self.handle is not None:
                try:
                    await self.executor.kill(self.handle, grace=self.kill_grace)
                except Exception:
                    log.exception("job %s: killing after the runner failed", self.job_id)
            if self.phase.phase is not Phase.ENDED:
                await self.end(failure("internal error in the job runner"))
        finally:
            if self.handle is not None:
                self.executor.release(self.handle)

    async def start(self) -> None:
        """A queued job: prepare its row, start its program, follow it. A job the server's
        going away interrupted (queued again, it has started before) is resumed: its log
        goes on, and its pipeline at the first unfinished window."""
        job = await self.store.get_job(self.job_id)
        if job is None or job["status"] != JobStatus.QUEUED:
            return
        self.audio_seconds = float(job.get("duration_seconds") or 0.0)
        out_dir = self.config.outputs_dir / str(self.job_id)
        out_dir.mkdir(parents=True, exist_ok=True)
        resume = job.get("started_at") is not None
        log_path = job_log_path(self.config, self.job_id)
        if resume and job.get("log_file_path"):
            log_path = Path(job["log_file_path"])
        joblog = await self._open_log(log_path, out_dir, resume)
        try:
            await self.store.update_job(self.job_id, log_file_path=str(log_path), output_path=str(out_dir))
            argv = pipeline_argv(self.config, job, out_dir, resume=resume)
            handle = await self._spawn(argv, log_path, joblog)
            if handle is not None:
                await self.follow(handle, joblog)
        finally:
            joblog.close()

    async def _open_log(self, path: Path, out_dir: Path, resume: bool) -> JobLog:
        if not resume:
            return open_job_log(self.config, path)
        joblog, lines = await asyncio.to_thread(reopen_job_log, self.config, path)
        # The line numbers and the segments of the first run go on; the pipeline prints
        # only what it transcribes now. A segment printed but not yet in its partial
        # transcript when the server went is transcribed again: kept once.
        kept = await asyncio.to_thread(kept_for_resume, out_dir)
        self.segments.extend(logged_segments(lines)[:kept])
        self.channel.seq = max(self.channel.seq, joblog.lines)
        self.note(joblog, f"resumed at {time.strftime('%H:%M')} after a server restart")
        return joblog

    def note(self, joblog: JobLog, text: str) -> None:
        """A line of the server's own in the job's log and on its channel."""
        line = f"[transcriptor] {text}"
        joblog.write(line)
        self.channel.publish_line(line, None)

    async def _spawn(self, argv: list[str], log_path: Path, joblog: JobLog) -> JobHandle | None:
        """The started program, registered in the row (or to be killed if it may not run
        now); None if it could not start, which ends the job."""
        marker = job_marker(self.store.install_id, self.job_id)
        try:
            handle = await self.executor.start(self.job_id, argv, marker=marker)
        except OSError as error:
            message = f"failed to start: {error}"
            self.note(joblog, message)
            await self.end(failure(message))
            return None
        self.handle = handle
        registered = await self.executor.register(
            handle, self.store, instance_id=self.instance_id, log_file_path=str(log_path)
        )
        if not registered:
            self.stop(REASON_BEFORE_START)
        return handle

    async def follow(self, handle: JobHandle, joblog: JobLog) -> None:
        """From a started (or re-attached) program to the recorded ending."""
        self.handle = handle
        self._following = True
        if self.phase.phase is Phase.STOPPING:
            # Cancelled while starting: the cancel found no process yet, so kill here.
            await self.executor.kill(handle, grace=self.kill_grace)
        else:
            self.phase.change(Phase.RUNNING)
        await self.announce()
        watchdog = asyncio.create_task(self._watch_stall(handle, joblog), name=f"stall-{self.job_id}")
        try:
            await OutputFollower(self, self.executor, handle, joblog, self._line_count).follow()
        finally:
            if self._stalled is None or watchdog.done():
                watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)  # a stall's kill finishes
        ended = await self.executor.wait(handle)
        if await self._interrupted(joblog):
            return
        await self.end(self._ending(ended))

    def _ending(self, ended: Exit) -> Ending:
        detail = self.last_error_line or self.last_line
        # The executor's cause (the kernel's OOM count, a lost cluster job), not a guess
        # from the signal.
        cause = ended.detail if ended.cause is not ExitCause.EXITED else None
        return decide_ending(
            ended.code, cancel_reason=self.stop_reason, detail=detail, cause=cause, failed=self._stalled
        )

    async def _watch_stall(self, handle: JobHandle, joblog: JobLog) -> None:
        """Stop the job, as a stop does, once it has printed nothing for --stall-timeout."""
        limit = self.config.stall_timeout
        if limit <= 0:
            return
        while True:
            quiet = time.monotonic() - self.last_output
            if quiet < limit:
                await asyncio.sleep(limit - quiet)
                continue
            if self.phase.phase is not Phase.RUNNING:
                return  # already stopping or draining: that ends it
            self._stalled = f"{STALLED_PREFIX} no output for {limit:g} s"
            self.stop(self._stalled)
            self.note(joblog, f"{self._stalled}; stopping it")
            report = await self.executor.kill(handle, grace=self.kill_grace)
            log.warning("job %s: %s: %s", self.job_id, self._stalled, report.reason)
            return

    async def _interrupted(self, joblog: JobLog) -> bool:
        """A local job the server's shutdown stopped goes back to the queue, to be resumed
        when the server starts again (--resume-interrupted); True if it did."""
        if self.stop_reason != REASON_SHUTDOWN or not self.config.resume_interrupted:
            return False
        job = await self.store.get_job(self.job_id)
        if job is None or not resumable(job):
            return False
        self.note(joblog, f"interrupted at {time.strftime('%H:%M')} by the server's shutdown")
        self.phase.change(Phase.ENDED)
        if await self.store.requeue_interrupted(self.job_id):
            log.info("job %s: queued again, to resume when the server starts", self.job_id)
        await self.announce()
        return True

    # -- stopping ----------------------------------------------------------------------

    def stop(self, reason: str) -> bool:
        """Move to stopping with `reason`; False if it already is, or has ended (the
        first reason stands)."""
        if self.phase.phase in (Phase.STOPPING, Phase.ENDED):
            return False
        self.phase.change(Phase.STOPPING, reason=reason)
        return True

    async def cancel(self, reason: str) -> None:
        """Stop the job and kill its program, then wait until its ending is recorded."""
        self.stop(reason)
        handle = self.live_handle
        if handle is not None:
            report = await self.executor.kill(handle, grace=self.kill_grace)
            log.info("job %s: %s (%s)", self.job_id, report.reason, reason)
        await self.done.wait()

    # -- ending and telling ------------------------------------------------------------

    async def end(self, ending: Ending) -> None:
        """Record the job's ending and tell everyone; the phase machine refuses a second."""
        self.phase.change(Phase.ENDED)
        if await record_ending(self.store, self.job_id, ending):
            self._observe_end(ending)
            self._on_ended(self.job_id)
        await self.announce()

    def _observe_end(self, ending: Ending) -> None:
        try:
            audio = self.audio_seconds if ending.status is JobStatus.COMPLETED else 0.0
            self._observer.job_finished(ending.status, time.monotonic() - self.started, audio)
        except Exception:  # measuring must never break a job's ending; logged, not hidden
            log.exception("job %s: metrics observer failed", self.job_id)

    def view(self, job: dict[str, Any]) -> dict[str, Any]:
        """The row plus what only the run knows (a running job is in no queue)."""
        return {**job, "queue_position": None, "metrics": self.metrics.fields() if self.metrics else None}

    async def announce(self) -> None:
        """Tell the job's channel and the job list what the row now says."""
        job = await self.store.get_job(self.job_id)
        if job is None:
            return
        view = self.view(job)
        self.channel.publish_status(status_message(view))
        self._feed(view)

    async def save_progress(self, progress: Progress) -> None:
        await self.store.set_progress(self.job_id, progress.fraction)
        job = await self.store.get_job(self.job_id)
        if job is not None:
            self._feed(self.view(job))
