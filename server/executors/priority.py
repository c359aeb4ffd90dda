"""How a standby waits without taking CPU from running jobs, and how it gets it back.

Three knobs, because each alone leaks:
- SCHED_IDLE, set before exec and inherited by every thread and child, so warming runs
  only on a core no job wants;
- nice (ours + 10) on the whole group, for kernels or policies that ignore the first;
- the session's autogroup nice (19). With autogrouping on (the default on many kernels,
  `kernel.sched_autogroup_enabled`), the scheduler first splits the CPU between sessions,
  and each standby is a session of its own: SCHED_IDLE and nice then only rank it within
  its session, and a warming standby still took about half of a core from the running
  job (a burst of short clips decoded 35% slower on standbys than cold). Niced, its
  session gets ~1.5% while anything else wants the CPU.
Taking a standby for a job undoes all three, to what a cold job would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from server.procs.identity import group_members

STANDBY_NICE = 10  # above the server's own
AUTOGROUP_NICE = 19
# A process without CAP_SYS_ADMIN may change an autogroup's nice once per 100 ms.
_AUTOGROUP_RETRIES = 20


class SessionNotRaised(Exception):
    """The standby's session could not be given a cold job's CPU weight (this time)."""


def own_nice() -> int:
    """The server's niceness, which a cold job inherits; a taken standby gets the same."""
    return os.getpriority(os.PRIO_PROCESS, 0)


def _write_autogroup_nice(pid: int, nice: int) -> None:
    with open(f"/proc/{pid}/autogroup", "w") as file:
        file.write(str(nice))


def idle_class() -> None:
    """preexec of a standby: the idle class, from its first instruction."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def lower_group(pgid: int, leader: int) -> None:
    """Right after spawn: the group's nice and the session's autogroup."""
    os.setpriority(os.PRIO_PGRP, pgid, min(19, own_nice() + STANDBY_NICE))
    # No autogroups, or rate-limited: it then waits with the other two knobs only.
    with contextlib.suppress(OSError):
        _write_autogroup_nice(leader, AUTOGROUP_NICE)


async def raise_group(pgid: int, leader: int) -> None:
    """Back to a cold job's priority: the group's nice, every thread's class, the session's
    autogroup. Raises PermissionError where the first two are not allowed (for good),
    SessionNotRaised when the autogroup would not change (this standby only), and
    ProcessLookupError if the standby is gone."""
    os.setpriority(os.PRIO_PGRP, pgid, own_nice())
    await asyncio.to_thread(_normal_class, pgid)
    for _ in range(_AUTOGROUP_RETRIES):
        try:
            _write_autogroup_nice(leader, 0)  # a new session's autogroup starts at 0
            return
        except BlockingIOError:
            await asyncio.sleep(0.1)  # rate-limited machine-wide without CAP_SYS_ADMIN
        except FileNotFoundError:
            return  # no autogroups in this kernel (or the standby just died)
        except OSError as error:
            raise SessionNotRaised(str(error)) from error
    raise SessionNotRaised("rate-limited for 2 s")


def _normal_class(pgid: int) -> None:
    """SCHED_OTHER, every thread of every process in the group (the policy is per thread)."""
    for pid in group_members(pgid):
        with contextlib.suppress(FileNotFoundError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))
