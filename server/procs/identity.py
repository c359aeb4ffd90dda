"""Who a process is: pid + start ticks + boot id, or a marker in its environment.

psutil's float create_time drifts, so start ticks (field 22 of /proc/PID/stat) are the
identity. A pid read from a database is only trusted once this checks out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

MARKER_ENV = "TRANSCRIPTOR_JOB"


_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str:
    """This boot's id; start ticks only mean something within one boot."""
    return Path(_BOOT_ID_PATH).read_text(encoding="ascii").strip()


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_ticks: int
    boot_id: str


@dataclass(frozen=True)
class Stat:
    state: str
    ppid: int
    pgrp: int
    start_ticks: int

    @property
    def alive(self) -> bool:
        # A zombie has finished; only its exit status is left for the parent to collect.
        return self.state not in ("Z", "X", "x")


def read_stat(pid: int) -> Stat | None:
    if pid <= 0:
        return None
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    # comm (field 2) may hold spaces and parentheses: parse after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state), so field N is fields[N - 3].
    return Stat(fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19]))


def read_identity(pid: int) -> ProcessIdentity | None:
    """pid, start ticks and boot id of a process, or None if there is no such process."""
    stat = read_stat(pid)
    if stat is None:
        return None
    return ProcessIdentity(pid, stat.start_ticks, boot_id())


def environ_marker(pid: int) -> str | None:
    try:
        return psutil.Process(pid).environ().get(MARKER_ENV)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None


def identity_matches(
    pid: int | None, start_ticks: int | None, boot: str | None, marker: str | None
) -> bool:
    """True if pid is the recorded process: same start ticks and boot, or it carries marker."""
    if pid is None or pid <= 0:
        return False
    stat = read_stat(pid)
    if stat is None:
        return False
    if start_ticks is not None and boot and stat.start_ticks == start_ticks:
        if boot == boot_id():
            return True
    return bool(marker) and environ_marker(pid) == marker


def all_stats() -> dict[int, Stat]:
    stats: dict[int, Stat] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                stat = read_stat(int(entry.name))
                if stat is not None:
                    stats[int(entry.name)] = stat
    return stats


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) members of process group pgid."""
    if pgid <= 1:
        return []
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []  # nobody left in the group, not even a zombie: skip the /proc scan
    except PermissionError:
        pass
    return [pid for pid, s in all_stats().items() if s.pgrp == pgid and s.alive]


def marker_carriers(marker: str) -> list[ProcessIdentity]:
    """Live processes whose environment names the job, wherever they moved (setsid)."""
    me = os.getpid()
    found: list[ProcessIdentity] = []
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(MARKER_ENV) != marker:
                continue
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
        stat = read_stat(proc.pid)
        if stat is not None and stat.alive:
            found.append(ProcessIdentity(proc.pid, stat.start_ticks, boot_id()))
    return found


def still_there(ident: ProcessIdentity) -> bool:
    stat = read_stat(ident.pid)
    return stat is not None and stat.alive and stat.start_ticks == ident.start_ticks


DEAD = Stat("X", 0, 0, -1)


def leader_state(
    pid: int | None, start_ticks: int | None, boot: str | None, marker: str | None
) -> tuple[bool, bool]:
    """(alive, ours) of a job's recorded leader; a zombie is not alive."""
    stat = read_stat(pid) if pid is not None else None
    if stat is None or not stat.alive:
        return False, False
    return True, identity_matches(pid, start_ticks, boot, marker)
