"""The default executor: each job a process group (and session) on this machine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from server.executors.base import JobHandle
from server.procs.kill import KillReport, Target, kill_tree
from server.procs.lines import read_lines
from server.procs.sampler import TreeSampler
from server.procs.spawn import spawn, wait_exited

# How long the exit code may wait for the output pipe to close once the leader is gone.
OUTPUT_CLOSE_SECONDS = 5.0


class LocalExecutor:
    def __init__(self, *, max_line_bytes: int = 65536) -> None:
        self.sampler = TreeSampler()
        self._max_line_bytes = max_line_bytes

    async def start(
        self,
        job_id: int,
        argv: Sequence[str],
        *,
        marker: str,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        own_stderr: bool = False,
    ) -> JobHandle:
        spawned = await spawn(argv, marker=marker, cwd=cwd, env=env, own_stderr=own_stderr)
        return JobHandle(
            job_id=job_id,
            marker=marker,
            pid=spawned.identity.pid,
            pgid=spawned.pgid,
            identity=spawned.identity,
            spawned=spawned,
        )

    def lines(self, handle: JobHandle) -> AsyncIterator[str]:
        stdout = handle.spawned.process.stdout
        assert stdout is not None, "spawn always pipes stdout"
        return read_lines(stdout, max_line_bytes=self._max_line_bytes)

    async def exited(self, handle: JobHandle) -> None:
        await wait_exited(handle.spawned.process)

    async def wait(self, handle: JobHandle) -> int:
        process = handle.spawned.process
        await wait_exited(process)
        try:
            async with asyncio.timeout(OUTPUT_CLOSE_SECONDS):
                return await process.wait()
        except TimeoutError:
            # The leader has exited but something we could not kill holds its output open
            # (it shed our marker): stop reading so the pipe does not keep us waiting.
            process._transport.close()  # type: ignore[attr-defined]  # no public way
            return await process.wait()

    async def sample(self, handles: Sequence[JobHandle]) -> dict[int, dict[str, Any]]:
        def sample_all() -> dict[int, dict[str, Any]]:
            by_pid = self.sampler.sample_many([h.pid for h in handles])
            return {h.job_id: by_pid[h.pid] for h in handles}

        # psutil reads /proc for every process of every tree: keep it off the event loop.
        return await asyncio.to_thread(sample_all)

    async def kill(self, handle: JobHandle, *, grace: float) -> KillReport:
        target = Target.of(handle.pgid, handle.identity, handle.marker)
        return await kill_tree(target, grace=grace, escapees=True, job_id=handle.job_id)

    def close_output(self, handle: JobHandle) -> None:
        process = handle.spawned.process
        if process.returncode is not None:
            # Normally already closed; if a process we could not kill still holds the
            # output pipe, this drops our end of it instead of keeping it for its life.
            # (Only once the leader is reaped: closing earlier would kill it.)
            process._transport.close()  # type: ignore[attr-defined]  # no public way

    def release(self, handle: JobHandle) -> None:
        process = handle.spawned.process
        self.close_output(handle)
        stdin = process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        self.sampler.forget(handle.pid)
