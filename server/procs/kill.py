"""Kill a process group with escalation: SIGTERM, wait the grace, SIGKILL.

ESRCH means the process already went. Only what is proven ours is signalled: a group whose
leader's identity checks out (or whose members carry the marker), and processes that left
the group but carry the marker.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from server.procs.identity import (
    DEAD,
    ProcessIdentity,
    environ_marker,
    group_members,
    identity_matches,
    marker_carriers,
    read_stat,
    still_there,
)

# How often a kill checks whether the group is gone; cheap checks, off the event loop.
_POLL_SECONDS = 0.025


# After SIGKILL the kernel needs a moment to tear the processes down.
_AFTER_SIGKILL_SECONDS = 2.0

_T = TypeVar("_T")


class KillThreads:
    """One thread that only a kill uses for its /proc reads.

    asyncio.to_thread shares the default pool with everything else (log replays, the
    sampler); a kill queued behind them could overrun its grace (issue #14). Each kill
    makes its own, so nothing else can take it and nothing outlives the kill.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kill")

    async def run(self, func: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(func, *args))

    def close(self) -> None:
        # Never waits: a read still running (the kill was cancelled) ends on its own.
        self._pool.shutdown(wait=False, cancel_futures=True)


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal a group; False if it was already empty. Never our own group or init's."""
    if pgid <= 1 or pgid == os.getpgrp():
        return False
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False  # ESRCH: the group already went
    return True


def signal_one(ident: ProcessIdentity, sig: signal.Signals) -> bool:
    """Signal one verified process, re-checking its start ticks just before."""
    if ident.pid <= 1 or ident.pid == os.getpid() or not still_there(ident):
        return False
    try:
        os.kill(ident.pid, sig)
    except ProcessLookupError:
        return False
    return True


@dataclass
class KillReport:
    job_id: int | None
    signalled: bool
    sigkilled: bool
    survivors: int
    reason: str  # "terminated by SIGTERM", "killed with SIGKILL after 5.0 s grace", ...


@dataclass(frozen=True)
class GroupCheck:
    ours: bool  # the group is proven to be the job's
    members: int  # live members of the group
    mismatch: bool  # something alive is in the way and is not ours


def check_group(
    pgid: int | None,
    leader_pid: int | None,
    start_ticks: int | None,
    boot: str | None,
    marker: str | None,
) -> GroupCheck:
    members = group_members(pgid) if pgid is not None and pgid > 1 else []
    if pgid is not None and pgid > 1 and identity_matches(leader_pid, start_ticks, boot, marker):
        leader_stat = read_stat(leader_pid or 0)
        if leader_stat is not None and leader_stat.pgrp == pgid:
            return GroupCheck(True, len(members), False)
    # The leader may have died while its group lives on: then the members must carry the
    # marker. A group id is not handed out again while any member is alive.
    if marker and any(environ_marker(pid) == marker for pid in members):
        return GroupCheck(True, len(members), False)
    leader_alive = leader_pid is not None and (read_stat(leader_pid) or DEAD).alive
    return GroupCheck(False, len(members), bool(members) or leader_alive)


def count_alive(pgid: int | None, strays: Iterable[ProcessIdentity]) -> int:
    count = len(group_members(pgid)) if pgid is not None else 0
    return count + sum(1 for s in strays if still_there(s))


async def wait_gone(
    pgid: int | None, strays: Iterable[ProcessIdentity], timeout: float, threads: KillThreads
) -> bool:
    """True as soon as the group and the strays are gone (zombies count as gone)."""
    strays = list(strays)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await threads.run(count_alive, pgid, strays) == 0:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(_POLL_SECONDS)


@dataclass(frozen=True)
class Target:
    """What a kill may touch: a group, the identity that proves it ours, and a marker."""

    pgid: int
    leader_pid: int | None = None
    start_ticks: int | None = None
    boot: str | None = None
    marker: str | None = None

    @classmethod
    def of(cls, pgid: int, leader: ProcessIdentity | None, marker: str | None) -> Target:
        if leader is None:
            return cls(pgid, marker=marker)
        return cls(pgid, leader.pid, leader.start_ticks, leader.boot_id, marker)


async def kill_tree(
    target: Target, *, grace: float, escapees: bool, job_id: int | None = None
) -> KillReport:
    """SIGTERM the group (and, with escapees, marked processes that left it), wait up to
    grace, then SIGKILL what is left. Returns what was done and what survived."""
    threads = KillThreads()
    try:
        return await _kill_tree(target, grace, escapees, job_id, threads)
    finally:
        threads.close()


async def _kill_tree(
    target: Target, grace: float, escapees: bool, job_id: int | None, threads: KillThreads
) -> KillReport:
    check = await threads.run(
        check_group, target.pgid, target.leader_pid, target.start_ticks, target.boot, target.marker
    )
    marker = target.marker
    strays: list[ProcessIdentity] = []
    if escapees and marker:
        in_group = set(await threads.run(group_members, target.pgid)) if check.ours else set()
        carriers = await threads.run(marker_carriers, marker)
        strays = [c for c in carriers if c.pid not in in_group]
    if not strays and not (check.ours and check.members):
        if check.mismatch:
            return KillReport(job_id, False, False, 0, "not signalled: identity mismatch")
        # Ours but only a zombie is left (or nothing at all): there is nobody to signal.
        return KillReport(job_id, False, False, 0, "already gone")
    group = target.pgid if check.ours else None

    signalled = False
    if group is not None:
        signalled = signal_group(group, signal.SIGTERM)
    for stray in strays:
        signalled = signal_one(stray, signal.SIGTERM) or signalled
    sigkilled = False
    if not await wait_gone(group, strays, grace, threads):
        if group is not None:
            sigkilled = signal_group(group, signal.SIGKILL)
        for stray in strays:
            sigkilled = signal_one(stray, signal.SIGKILL) or sigkilled
        await wait_gone(group, strays, _AFTER_SIGKILL_SECONDS, threads)
    late_killed = 0
    if escapees and marker:
        # Anything forked while we were waiting carries the marker too.
        late = await threads.run(marker_carriers, marker)
        late_killed = sum(signal_one(proc, signal.SIGKILL) for proc in late)
        if late:
            await wait_gone(None, late, _AFTER_SIGKILL_SECONDS, threads)
            strays = strays + late
    survivors = await threads.run(count_alive, group, strays)
    if sigkilled:
        reason = f"killed with SIGKILL after {grace:.1f} s grace"
    elif signalled:
        reason = "terminated by SIGTERM"
    else:
        reason = "already gone"
    if not check.ours and check.mismatch:
        reason += "; group not signalled (identity mismatch), escaped processes were"
    if late_killed:
        reason += f"; {late_killed} process(es) started meanwhile killed with SIGKILL"
        sigkilled = True
    if survivors:
        reason += f"; {survivors} process(es) survived"
    return KillReport(job_id, signalled or sigkilled, sigkilled, survivors, reason)
