"""Jobs as Ray Jobs on a cluster (issue #17): one Ray job per transcriptor job.

The entrypoint is `python -m pipeline.ray_entry`, which fetches the audio with a one-time
secret, runs the same pipeline, and prints its metrics and its transcript as protocol
lines. Those lines are taken out of the stream here; every other line is yielded, so
the job's log and its sequence numbers are the same as a local job's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import shlex
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.formats import write_atomic
from pipeline.protocol import parse_metrics, parse_result
from pipeline.ray_entry import SECRET_ENV, transcriptor_version
from server.config import Config
from server.executors.base import Exit, ExitCause, JobHandle
from server.executors.ray_cluster import STOPPED, ClusterError, NoSuchRayJob, RayCluster, RayJobInfo
from server.procs.identity import MARKER_ENV
from server.procs.kill import KillReport
from server.procs.sampler import Sample

if TYPE_CHECKING:
    from server.store import Store

log = logging.getLogger(__name__)

NAME = "ray"
# Ray closes a tail 3-5 s after the job ends; past this, stop waiting for it.
TAIL_CLOSE_SECONDS = 15.0
STATUS_POLL_SECONDS = 0.5
# A tail that breaks while the job runs (a dashboard restart) is opened again this often.
TAIL_RETRIES = 5
# How long wait() asks an unreachable cluster before failing the job; if the Ray job
# still runs when the cluster is back, the cluster sweep stops it (its row is over).
UNREACHABLE_SECONDS = 120.0


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_submission_id(install_id: str, job_id: int) -> str:
    # Ray never reuses a submission id, so each attempt gets a fresh one.
    return f"transcriptor-{install_id[:8]}-{job_id}-{uuid.uuid4().hex[:8]}"


def write_result_files(out_dir: Path, files: dict[str, bytes]) -> None:
    """The transcript files a [result] line carried, into the job's output folder."""
    for name, data in files.items():
        if "/" not in name and name.startswith("transcript"):
            write_atomic(out_dir / name, data.decode("utf-8", "replace"))


@dataclass(eq=False)
class RayJobHandle(JobHandle):
    """A job Ray runs: no process here; the row names its submission id instead."""

    remote_id: str = ""
    out_dir: Path | None = None
    skip_lines: int = 0  # lines already in the job's log (a re-attach)
    metrics: Sample | None = None
    started: float = field(default_factory=time.monotonic)
    tail_done: asyncio.Event = field(default_factory=asyncio.Event)
    info: RayJobInfo | None = None
    node: str | None = None  # recorded in the row once known
    closed: bool = False
    tail_task: asyncio.Task[None] | None = None


class LineSplitter:
    """Ray's tail arrives in chunks that cut lines anywhere; this yields whole lines."""

    def __init__(self) -> None:
        self._pending = ""

    def feed(self, chunk: str) -> list[str]:
        text = self._pending + chunk
        *lines, self._pending = text.split("\n")
        return [line.rstrip("\r") for line in lines]

    def rest(self) -> list[str]:
        rest, self._pending = self._pending, ""
        return [rest] if rest else []


class RayExecutor:
    def __init__(self, config: Config, store: Store, cluster: RayCluster | None = None) -> None:
        assert config.ray_address, "config.check() requires --ray-address with --executor ray"
        self.config = config
        self.store = store
        self.cluster = cluster or RayCluster(config.ray_address)

    # -- starting ----------------------------------------------------------------------

    def entrypoint(self, job_id: int, options: Sequence[str]) -> str:
        """The node's command line: no secret, no server path (Ray logs it and serves it)."""
        argv = [
            "python", "-m", "pipeline.ray_entry",
            "--server", self.config.node_url,
            "--job", str(job_id),
            "--expect-version", transcriptor_version(),
            "--report-metrics", f"{self.config.metrics_interval:g}",
        ]  # fmt: skip
        if self.config.pipeline_command:
            argv += ["--pipeline-command", shlex.join(self.config.pipeline_command)]
        return shlex.join([*argv, "--", *options])

    def split_argv(self, argv: Sequence[str]) -> tuple[Path, list[str]]:
        """(out dir, options) of the runner's pipeline argv: COMMAND INPUT --out-dir DIR OPTIONS."""
        n = len(self.config.pipeline_command) or 3  # [python, -m, pipeline]
        if len(argv) < n + 3 or argv[n + 1] != "--out-dir":
            raise ValueError(f"unexpected pipeline command line {list(argv)!r}")
        return Path(argv[n + 2]), list(argv[n + 3 :])

    async def start(
        self, job_id: int, argv: Sequence[str], *, marker: str, cwd: str | None = None
    ) -> RayJobHandle:
        out_dir, options = self.split_argv(argv)
        secret = secrets.token_urlsafe(32)
        submission_id = new_submission_id(self.store.install_id, job_id)
        # Named in the row before Ray hears of it: a crash in between leaves a Ray job the
        # cluster sweep recognises as ours (and stops, since no row names it any more).
        await self.store.update_job(
            job_id, executor=NAME, ray_submission_id=submission_id, job_secret_hash=secret_hash(secret)
        )
        metadata = {
            "transcriptor_job": str(job_id),
            "transcriptor_install": self.store.install_id,
            "transcriptor_version": transcriptor_version(),
        }
        await self.cluster.submit(
            submission_id=submission_id,
            entrypoint=self.entrypoint(job_id, options),
            metadata=metadata,
            env={SECRET_ENV: secret, MARKER_ENV: marker},
        )
        log.info("job %s: submitted to Ray as %s", job_id, submission_id)
        return RayJobHandle(job_id, marker, remote_id=submission_id, out_dir=out_dir)

    def reattach(self, job: dict[str, Any], marker: str, skip_lines: int) -> RayJobHandle:
        """A handle on a Ray job a previous server instance started; its log resumes after
        the `skip_lines` lines already in the job's log file."""
        out_dir = Path(job["output_path"]) if job.get("output_path") else None
        return RayJobHandle(
            int(job["id"]),
            marker,
            remote_id=str(job["ray_submission_id"]),
            out_dir=out_dir,
            skip_lines=skip_lines,
        )

    async def register(
        self, handle: RayJobHandle, store: Store, *, instance_id: str, log_file_path: str
    ) -> bool:
        # No local process: the row already names the Ray job (start() wrote it).
        return await store.register_remote(
            handle.job_id, instance_id=instance_id, log_file_path=log_file_path
        )

    # -- output ------------------------------------------------------------------------

    async def lines(self, ray: RayJobHandle) -> AsyncIterator[str]:
        splitter = LineSplitter()
        seen = 0  # lines of Ray's log read so far; a re-opened tail replays them
        to_skip = ray.skip_lines
        try:
            for attempt in range(TAIL_RETRIES + 1):
                replayed = 0
                splitter = LineSplitter()
                async for chunk in self._chunks(ray):
                    for line in splitter.feed(chunk):
                        if replayed < seen:
                            replayed += 1
                            continue
                        seen += 1
                        replayed += 1
                        if await self._take(ray, line):
                            continue
                        if to_skip:
                            to_skip -= 1
                            continue
                        yield line
                if ray.closed or await self._ended(ray):
                    break
                log.warning("job %s: Ray log tail broke; reopening (%d)", ray.job_id, attempt + 1)
                await asyncio.sleep(1.0)
            else:
                yield f"[transcriptor] lost the log of Ray job {ray.remote_id}"
            for line in splitter.rest():
                if not await self._take(ray, line) and not to_skip:
                    yield line
        finally:
            ray.tail_done.set()

    async def _chunks(self, ray: RayJobHandle) -> AsyncIterator[str]:
        """The tail's chunks until Ray closes it, or until the job has been over for
        TAIL_CLOSE_SECONDS without it closing."""
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        tail = self.cluster.tail(ray.remote_id, queue)
        ray.tail_task = asyncio.create_task(tail, name=f"tail-{ray.job_id}")
        ended_at: float | None = None
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=2.0)
                except TimeoutError:
                    if ray.closed:
                        return
                    if ended_at is None and await self._ended(ray):
                        ended_at = time.monotonic()
                    if ended_at is not None and time.monotonic() - ended_at > TAIL_CLOSE_SECONDS:
                        return
                    continue
                if item is None:
                    return
                if isinstance(item, BaseException):
                    log.warning("job %s: Ray log tail ended: %r", ray.job_id, item)
                    return
                if ray.node is None:
                    await self._note_node(ray)
                yield item
        finally:
            ray.tail_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ray.tail_task

    async def _take(self, ray: RayJobHandle, line: str) -> bool:
        """Consume a wrapper's metrics or result line; True if it was one."""
        metrics = parse_metrics(line)
        if metrics is not None:
            ray.metrics = Sample(
                running=True,
                pid=None,
                cpu_percent=metrics.cpu_percent,
                memory_bytes=metrics.memory_bytes,
                elapsed_seconds=time.monotonic() - ray.started,
                num_processes=metrics.num_processes,
            )
            return True
        files = parse_result(line)
        if files is None:
            return False
        if ray.out_dir is not None:
            await asyncio.to_thread(write_result_files, ray.out_dir, files)
        return True

    async def _note_node(self, ray: RayJobHandle) -> None:
        with contextlib.suppress(ClusterError):
            ray.info = await self.cluster.info(ray.remote_id)
            if ray.info.node_id:
                ray.node = ray.info.node_id
                await self.store.update_job(ray.job_id, ray_node=ray.node)

    async def _ended(self, ray: RayJobHandle) -> bool:
        try:
            ray.info = await self.cluster.info(ray.remote_id)
        except ClusterError:
            return False
        return ray.info.terminal

    async def exited(self, ray: RayJobHandle) -> None:
        # Ray's log outlives the job by seconds: the job is over for us when the tail is.
        await ray.tail_done.wait()

    def close_output(self, ray: RayJobHandle) -> None:
        ray.closed = True
        if ray.tail_task is not None:
            ray.tail_task.cancel()

    async def wait(self, ray: RayJobHandle) -> Exit:
        """The job's exit once Ray reports it ended; a stop reads as SIGTERM (-15). A job
        the cluster forgot, or a cluster unreachable for too long, is lost."""
        reachable = time.monotonic()
        while True:
            try:
                info = ray.info = await self.cluster.info(ray.remote_id)
                reachable = time.monotonic()
            except NoSuchRayJob as error:
                log.warning("job %s: %s", ray.job_id, error)  # the cluster was reset
                return Exit(1, ExitCause.LOST, str(error))
            except ClusterError as error:
                log.warning("job %s: %s", ray.job_id, error)
                info = None
                if time.monotonic() - reachable > UNREACHABLE_SECONDS:
                    return Exit(1, ExitCause.LOST, f"Ray unreachable: {error}")
            if info is not None and info.terminal:
                if info.status == STOPPED:
                    return Exit(-15)
                if info.driver_exit_code is not None:
                    return Exit(int(info.driver_exit_code))
                return Exit(0 if info.status == "SUCCEEDED" else 1)
            await asyncio.sleep(STATUS_POLL_SECONDS)

    # -- metrics and stopping ----------------------------------------------------------

    async def sample(self, handles: Sequence[RayJobHandle]) -> dict[int, Sample]:
        """The last metrics each job's wrapper reported."""
        samples = {}
        for ray in handles:
            if ray.metrics is not None:
                samples[ray.job_id] = replace(ray.metrics, elapsed_seconds=time.monotonic() - ray.started)
        return samples

    async def kill(self, ray: RayJobHandle, *, grace: float) -> KillReport:
        """Ask Ray to stop the job; Ray's own grace (RAY_JOB_STOP_WAIT_TIME_S) applies."""
        try:
            stopping = await self.cluster.stop(ray.remote_id)
        except ClusterError as error:
            return KillReport(ray.job_id, False, False, 0, f"could not stop Ray job: {error}")
        reason = f"asked Ray to stop {ray.remote_id}" if stopping else f"Ray job {ray.remote_id} had ended"
        return KillReport(ray.job_id, stopping, False, 0, reason)

    def release(self, ray: RayJobHandle) -> None:
        self.close_output(ray)

