"""One cgroup per job: placed before exec, killed whole, memory-capped, counted exactly.

Jobs live under `<v2 mount>/<server's own cgroup or --cgroup-root>/transcriptor-<install>/
job-<id>`, so a restarted server finds its own leftovers by name and their members by
`cgroup.procs` (an exact list, nothing guessed). Where the v2 memory controller cannot be
delegated, a parallel v1 memory cgroup with the same names caps and counts memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.procs.kill import KillReport

# How often a kill checks `cgroup.events`; a read of a small kernel file.
_POLL_SECONDS = 0.02
_AFTER_KILL_SECONDS = 5.0
_JOB_DIR = re.compile(r"job-(\d+)$")


class CgroupUnavailable(Exception):
    """Cgroups cannot be used here; the message says why."""


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts(mountinfo: str) -> list[tuple[Path, str, str, set[str]]]:
    """(mount point, root, fstype, super options) of each line of /proc/self/mountinfo."""
    found = []
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        found.append((Path(_unescape(fields[4])), _unescape(fields[3]), rest[0], set(rest[2].split(","))))
    return found


def own_cgroups(text: str) -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            found[name] = path
    return found


def _under(mount: Path, mount_root: str, own: str) -> Path:
    # A mount of a sub-tree (a container) shows paths relative to its root.
    rel = os.path.relpath(own, mount_root) if own.startswith(mount_root) else own.lstrip("/")
    return mount / ("" if rel == "." else rel)


def _read(path: Path) -> str:
    return path.read_text(encoding="ascii")


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="ascii")


def _keyed(path: Path) -> dict[str, int]:
    """A `key value` file (cpu.stat, memory.events, memory.oom_control) as a dict."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in _read(path).splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
    return out


def _number(path: Path) -> int | None:
    try:
        return int(_read(path).strip())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class JobCgroup:
    """One job's cgroup (v2), and its v1 memory cgroup where memory lives in v1."""

    path: Path
    memory_v1: Path | None
    memory_v2: bool

    def preexec(self) -> Callable[[], None]:
        """For preexec_fn: join the job's cgroups in the child, before exec, so nothing it
        forks is ever outside them. Only os calls: it runs between fork and exec."""
        targets = [str(self.path / "cgroup.procs")]
        if self.memory_v1 is not None:
            targets.append(str(self.memory_v1 / "cgroup.procs"))

        def join() -> None:
            for target in targets:
                fd = os.open(target, os.O_WRONLY)
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)

        return join

    def exists(self) -> bool:
        return (self.path / "cgroup.procs").exists()

    def adopt(self, pids: list[int]) -> None:
        """Move running processes in (a warm standby taking a job); what they fork from
        then on is born inside. Raises OSError (ESRCH for one that just exited)."""
        for target in [self.path, *([self.memory_v1] if self.memory_v1 is not None else [])]:
            for pid in pids:
                _write(target / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in _read(self.path / "cgroup.procs").split()]
        except OSError:
            return []

    def populated(self) -> bool:
        return _keyed(self.path / "cgroup.events").get("populated", 0) == 1

    def member(self, pid: int) -> bool:
        """True if pid is in this cgroup right now (read from the process's side)."""
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8")
        except OSError:
            return False
        v2 = own_cgroups(text).get("")
        return v2 is not None and self.path.as_posix().endswith(v2) and v2 != "/"

    def kill_all(self) -> None:
        """SIGKILL every member at once, forks in flight included (cgroup.kill)."""
        _write(self.path / "cgroup.kill", "1")

    def signal_members(self, sig: signal.Signals) -> int:
        """Send sig to each member through a pidfd, re-checked to be a member after the
        pidfd pins the process, so a reused pid is never signalled."""
        sent = 0
        for pid in self.pids():
            if pid == os.getpid():
                continue
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                if self.member(pid):
                    signal.pidfd_send_signal(fd, sig)
                    sent += 1
            except ProcessLookupError:
                pass
            finally:
                os.close(fd)
        return sent

    def cpu_usec(self) -> int | None:
        return _keyed(self.path / "cpu.stat").get("usage_usec")

    def memory(self) -> tuple[int | None, int | None]:
        """(current, peak) bytes, from whichever hierarchy holds memory."""
        if self.memory_v2:
            return _number(self.path / "memory.current"), _number(self.path / "memory.peak")
        if self.memory_v1 is not None:
            return (
                _number(self.memory_v1 / "memory.usage_in_bytes"),
                _number(self.memory_v1 / "memory.max_usage_in_bytes"),
            )
        return None, None

    def oom_kills(self) -> int:
        if self.memory_v2:
            return _keyed(self.path / "memory.events").get("oom_kill", 0)
        if self.memory_v1 is not None:
            return _keyed(self.memory_v1 / "memory.oom_control").get("oom_kill", 0)
        return 0

    def remove(self) -> bool:
        """rmdir both cgroups; False if something still lives in them."""
        removed = True
        for path in (self.path, self.memory_v1):
            if path is None:
                continue
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                removed = False
        return removed


@dataclass(frozen=True)
class Cgroups:
    """The per-server parent of all job cgroups."""

    parent: Path
    memory_parent: Path | None  # v1 memory, when memory is not in v2
    memory_v2: bool
    memory_limit: int | None  # bytes

    @property
    def memory_accounted(self) -> bool:
        return self.memory_v2 or self.memory_parent is not None

    def job(self, job_id: int) -> JobCgroup:
        memory = self.memory_parent / f"job-{job_id}" if self.memory_parent is not None else None
        return JobCgroup(self.parent / f"job-{job_id}", memory, self.memory_v2)

    def create(self, job_id: int) -> JobCgroup:
        """A fresh cgroup for the job, its memory cap set. Raises OSError."""
        job = self.job(job_id)
        if job.exists() and not job.populated():
            job.remove()  # an empty leftover of a job with this id: start from zero counters
        job.path.mkdir(exist_ok=True)
        if job.memory_v1 is not None:
            job.memory_v1.mkdir(exist_ok=True)
        if self.memory_limit is not None:
            if self.memory_v2:
                _write(job.path / "memory.max", str(self.memory_limit))
                with contextlib.suppress(OSError):  # no swap configured: nothing to cap
                    _write(job.path / "memory.swap.max", "0")
            elif job.memory_v1 is not None:
                _write(job.memory_v1 / "memory.limit_in_bytes", str(self.memory_limit))
                with contextlib.suppress(OSError):  # memsw needs swap accounting
                    _write(job.memory_v1 / "memory.memsw.limit_in_bytes", str(self.memory_limit))
        return job

    def job_ids(self) -> list[int]:
        """Ids of the job cgroups that exist under this server's parent."""
        ids = []
        with contextlib.suppress(OSError):
            for entry in self.parent.iterdir():
                match = _JOB_DIR.match(entry.name)
                if match and entry.is_dir():
                    ids.append(int(match.group(1)))
        return sorted(ids)

    def close(self) -> None:
        """Remove the parents if no job cgroup is left in them."""
        for path in (self.parent, self.memory_parent):
            if path is not None:
                with contextlib.suppress(OSError):
                    path.rmdir()


def find_existing(install_id: str) -> Cgroups | None:
    """An install's parent cgroup wherever a server made it, without creating anything:
    for `transcriptor cleanup`, which runs from another cgroup than the server did. The
    name carries the install id, so what is found is exactly that install's."""
    name = f"transcriptor-{install_id}"
    mountinfo = mounts(Path("/proc/self/mountinfo").read_text(encoding="utf-8"))
    for mount, _root, kind, _opts in mountinfo:
        if kind != "cgroup2":
            continue
        for folder, subfolders, _files in os.walk(mount):
            if name in subfolders:
                parent = Path(folder) / name
                memory = next(
                    (Path(f) / name for m, _r, k, o in mountinfo if k == "cgroup" and "memory" in o
                     for f, subs, _ in os.walk(m) if name in subs),
                    None,
                )  # fmt: skip
                return Cgroups(parent, memory, False, None)
    return None


def setup(install_id: str, *, root: Path | None, memory_mb: int | None) -> Cgroups:
    """Create this install's parent cgroup; raises CgroupUnavailable saying why not."""
    mountinfo = mounts(Path("/proc/self/mountinfo").read_text(encoding="utf-8"))
    own = own_cgroups(Path("/proc/self/cgroup").read_text(encoding="utf-8"))
    if root is None:
        v2 = [(m, r) for m, r, kind, _ in mountinfo if kind == "cgroup2"]
        if not v2 or "" not in own:
            raise CgroupUnavailable("no cgroup v2 hierarchy is mounted")
        root = _under(v2[0][0], v2[0][1], own[""])
    parent = root / f"transcriptor-{install_id}"
    try:
        parent.mkdir(exist_ok=True)
    except OSError as error:
        raise CgroupUnavailable(f"cannot create {parent}: {error.strerror or error}") from None
    if not (parent / "cgroup.kill").exists():
        with contextlib.suppress(OSError):
            parent.rmdir()
        raise CgroupUnavailable(f"{root} is not a cgroup v2 directory with cgroup.kill")
    memory_v2 = False
    memory_parent = None
    if "memory" in _read(root / "cgroup.controllers").split():
        try:  # fails where the no-internal-processes rule forbids it (the server is here)
            if "memory" not in _read(root / "cgroup.subtree_control").split():
                _write(root / "cgroup.subtree_control", "+memory")
            _write(parent / "cgroup.subtree_control", "+memory")
            memory_v2 = True
        except OSError:
            pass
    if not memory_v2:
        v1 = [(m, r) for m, r, kind, opts in mountinfo if kind == "cgroup" and "memory" in opts]
        if v1 and "memory" in own:
            memory_parent = _under(v1[0][0], v1[0][1], own["memory"]) / parent.name
            try:
                memory_parent.mkdir(exist_ok=True)
            except OSError:
                memory_parent = None
    if memory_mb is not None and not (memory_v2 or memory_parent is not None):
        raise CgroupUnavailable("no memory controller can be used (neither v2 nor v1)")
    limit = memory_mb * 1024 * 1024 if memory_mb is not None else None
    return Cgroups(parent, memory_parent, memory_v2, limit)


async def _wait_empty(job: JobCgroup, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while job.populated():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_SECONDS)
    return True


async def kill_cgroup(job: JobCgroup, *, grace: float, job_id: int | None = None) -> KillReport:
    """SIGTERM every member (so the pipeline can write its partial transcript), wait up
    to grace for the cgroup to empty, then cgroup.kill and wait for `populated 0`."""
    if not job.populated():
        return KillReport(job_id, False, False, 0, "already gone")
    signalled = job.signal_members(signal.SIGTERM) > 0
    sigkilled = False
    if not await _wait_empty(job, grace):
        job.kill_all()
        sigkilled = True
        await _wait_empty(job, _AFTER_KILL_SECONDS)
    survivors = len(job.pids())
    if sigkilled:
        reason = f"killed with SIGKILL after {grace:.1f} s grace (cgroup.kill)"
    elif signalled:
        reason = "terminated by SIGTERM"
    else:
        reason = "already gone"
    if survivors:
        reason += f"; {survivors} process(es) survived"
    return KillReport(job_id, signalled or sigkilled, sigkilled, survivors, reason)
