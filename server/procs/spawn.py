"""Start a program as the leader of its own session, and learn when it exits."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from server.procs.identity import MARKER_ENV, ProcessIdentity, boot_id, read_identity


@dataclass
class SpawnedProcess:
    process: asyncio.subprocess.Process
    identity: ProcessIdentity
    pgid: int


async def spawn(
    argv: Sequence[str],
    *,
    marker: str,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    own_stderr: bool = False,
    preexec: Callable[[], None] | None = None,
) -> SpawnedProcess:
    """Start argv as the leader of a new session (and group) with the job's marker set.

    stdin is a pipe left open: closing it is how the child learns its parent went away.
    stdout and stderr share one pipe (with own_stderr, stderr stays ours: a terminal).
    preexec runs in the child after setsid, before exec (it joins the job's cgroup).
    Raises OSError (FileNotFoundError, ...) if argv cannot be started,
    subprocess.SubprocessError if preexec failed.
    """
    child_env = dict(os.environ if env is None else env)
    child_env[MARKER_ENV] = marker
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=None if own_stderr else asyncio.subprocess.STDOUT,
        cwd=cwd,
        env=child_env,
        start_new_session=True,
        preexec_fn=preexec,
    )
    identity = read_identity(process.pid)
    if identity is None:
        # Exited and reaped already; -1 ticks never match a live process, so nothing
        # will ever be signalled on its behalf.
        identity = ProcessIdentity(process.pid, -1, boot_id())
    return SpawnedProcess(process=process, identity=identity, pgid=process.pid)


async def wait_exited(process: asyncio.subprocess.Process) -> None:
    """Return once process has exited (a zombie counts), whoever still holds its pipes.

    On Python 3.11 `Process.wait()` also waits for the stdout pipe to close, so a
    descendant that inherited it keeps that wait going after the leader has gone. A pidfd
    turns readable the moment the process exits, without reaping it from asyncio.
    """
    if process.returncode is not None:
        return
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return  # exited and reaped already
    except OSError:  # no pidfd support: fall back to the plain wait
        await process.wait()
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
