"""Process groups: spawn in a new session, prove identity, sample the tree, kill with escalation.

The promise this module keeps: every process a job starts can be found again (its group,
or the environment marker its descendants inherit), and nothing we did not start is ever
signalled. A pid read from the database is only trusted after its identity checks out:
same pid, same start ticks (field 22 of /proc/PID/stat) and same boot id, or the job's
marker in its environment. psutil's float create_time drifts, so it is not used for identity.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from server.jobstate import ORPHANED_PREFIX
from server.logtail import tail_lines

if TYPE_CHECKING:
    from server.store import Store

MARKER_ENV = "TRANSCRIPTOR_JOB"
_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
# How often a kill checks whether the group is gone; cheap checks, off the event loop.
_POLL_SECONDS = 0.025
# After SIGKILL the kernel needs a moment to tear the processes down.
_AFTER_SIGKILL_SECONDS = 2.0


def job_marker(install_id: str, job_id: int) -> str:
    """The value of MARKER_ENV in every process of a job; unique across installs."""
    return f"{install_id}:{job_id}"


def boot_id() -> str:
    """This boot's id; start ticks only mean something within one boot."""
    return Path(_BOOT_ID_PATH).read_text(encoding="ascii").strip()


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_ticks: int
    boot_id: str


@dataclass(frozen=True)
class _Stat:
    state: str
    ppid: int
    pgrp: int
    start_ticks: int

    @property
    def alive(self) -> bool:
        # A zombie has finished; only its exit status is left for the parent to collect.
        return self.state not in ("Z", "X", "x")


def _read_stat(pid: int) -> _Stat | None:
    if pid <= 0:
        return None
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    # comm (field 2) may hold spaces and parentheses: parse after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state), so field N is fields[N - 3].
    return _Stat(fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[19]))


def read_identity(pid: int) -> ProcessIdentity | None:
    """pid, start ticks and boot id of a process, or None if there is no such process."""
    stat = _read_stat(pid)
    if stat is None:
        return None
    return ProcessIdentity(pid, stat.start_ticks, boot_id())


def _environ_marker(pid: int) -> str | None:
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
    stat = _read_stat(pid)
    if stat is None:
        return False
    if start_ticks is not None and boot and stat.start_ticks == start_ticks:
        if boot == boot_id():
            return True
    return bool(marker) and _environ_marker(pid) == marker


def _all_stats() -> dict[int, _Stat]:
    stats: dict[int, _Stat] = {}
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                stat = _read_stat(int(entry.name))
                if stat is not None:
                    stats[int(entry.name)] = stat
    return stats


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) members of process group pgid."""
    if pgid <= 1:
        return []
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []  # nobody left in the group, not even a zombie: skip the /proc scan
    except PermissionError:
        pass
    return [pid for pid, s in _all_stats().items() if s.pgrp == pgid and s.alive]


def _marker_carriers(marker: str) -> list[ProcessIdentity]:
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
        stat = _read_stat(proc.pid)
        if stat is not None and stat.alive:
            found.append(ProcessIdentity(proc.pid, stat.start_ticks, boot_id()))
    return found


def _still_there(ident: ProcessIdentity) -> bool:
    stat = _read_stat(ident.pid)
    return stat is not None and stat.alive and stat.start_ticks == ident.start_ticks


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal a group; False if it was already empty. Never our own group or init's."""
    if pgid <= 1 or pgid == os.getpgrp():
        return False
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False  # ESRCH: the group already went
    return True


def _signal_one(ident: ProcessIdentity, sig: signal.Signals) -> bool:
    """Signal one verified process, re-checking its start ticks just before."""
    if ident.pid <= 1 or ident.pid == os.getpid() or not _still_there(ident):
        return False
    try:
        os.kill(ident.pid, sig)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# Spawning and reading output


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
) -> SpawnedProcess:
    """Start argv as the leader of a new session (and group) with the job's marker set.

    stdin is a pipe left open: closing it is how the child learns its parent went away.
    stdout and stderr share one pipe. Raises OSError (FileNotFoundError, ...) if argv cannot
    be started.
    """
    child_env = dict(os.environ if env is None else env)
    child_env[MARKER_ENV] = marker
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env=child_env,
        start_new_session=True,
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


def _utf8_cut(buf: bytearray, start: int, end: int) -> int:
    """end, moved back (at most 3 bytes) so a UTF-8 character is not split."""
    cut = end
    while cut > start and end - cut < 3 and (buf[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > start else end


async def read_lines(
    stream: asyncio.StreamReader, *, max_line_bytes: int = 65536
) -> AsyncIterator[str]:
    """Decoded lines from stream, split at \\n, \\r\\n and a lone \\r (progress bars).

    A line longer than max_line_bytes is cut into pieces of at most max_line_bytes (backed
    off to a UTF-8 character boundary), each yielded as a line: nothing is dropped, and
    memory stays bounded however long the line. A final line without an end is yielded at
    EOF. Bytes that are not UTF-8 become U+FFFD.
    """
    if max_line_bytes < 4:
        raise ValueError("max_line_bytes must be at least 4")
    buf = bytearray()
    skip_lf = False  # the last line ended in \r: a \n right after it belongs to it
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        buf += chunk
        pos = 0
        n = len(buf)
        # Where the next \r and \n are (n: none in the buffer). Each is searched for again
        # only once passed: searching a window per line scanned 64 KiB for a \r that
        # was not there, for every 100-byte line.
        next_cr = next_lf = -1
        while pos < n:
            if skip_lf:
                skip_lf = False
                if buf[pos] == 0x0A:
                    pos += 1
                    continue
            if next_cr < pos:
                next_cr = buf.find(b"\r", pos)
                if next_cr < 0:
                    next_cr = n
            if next_lf < pos:
                next_lf = buf.find(b"\n", pos)
                if next_lf < 0:
                    next_lf = n
            i = next_cr if next_cr < next_lf else next_lf
            if i < n and i - pos <= max_line_bytes:
                yield buf[pos:i].decode("utf-8", errors="replace")
                skip_lf = buf[i] == 0x0D
                pos = i + 1
            elif n - pos > max_line_bytes:
                cut = _utf8_cut(buf, pos, pos + max_line_bytes)
                yield buf[pos:cut].decode("utf-8", errors="replace")
                pos = cut
            else:
                break  # an incomplete line: wait for more
        del buf[:pos]
    if buf:
        yield buf.decode("utf-8", errors="replace")


# ------------------------------------------------------------------------------------------
# Sampling


def _gone_sample(pid: int | None) -> dict[str, Any]:
    return {
        "running": False,
        "pid": pid,
        "cpu_percent": 0.0,
        "memory_mb": 0.0,
        "elapsed_seconds": 0.0,
        "num_processes": 0,
    }


class TreeSampler:
    """CPU and memory of a process tree, summed over the root and all its descendants.

    Keeps one psutil.Process per pid, so cpu_percent() is a real delta since the previous
    sample (the first sample of a process reports 0). Synchronous; run it with
    asyncio.to_thread. A lock makes concurrent calls from several threads safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trees: dict[int, dict[int, psutil.Process]] = {}

    def sample_many(self, root_pids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """sample() of each root, finding every tree's members in one pass over /proc.

        psutil's children() reads the stat of every process on the machine; once per job
        per second, that was most of the monitor's cost (benchmarks/RESULTS.md).
        """
        children_of: dict[int, list[int]] = {}
        for pid, stat in _all_stats().items():
            if stat.alive:
                children_of.setdefault(stat.ppid, []).append(pid)
        return {pid: self.sample(pid, children_of=children_of) for pid in root_pids}

    def sample(self, root_pid: int, *, children_of: dict[int, list[int]] | None = None) -> dict[str, Any]:
        with self._lock:
            cache = self._trees.setdefault(root_pid, {})
            root = self._cached(cache, root_pid)
            try:
                if root is None or root.status() == psutil.STATUS_ZOMBIE:
                    raise psutil.NoSuchProcess(root_pid)
                elapsed = max(0.0, time.time() - root.create_time())
                if children_of is not None:
                    procs = [root, *_descendants(root_pid, children_of, cache)]
                else:
                    try:
                        procs = [root, *root.children(recursive=True)]
                    except psutil.AccessDenied:
                        procs = [root]
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                self._trees.pop(root_pid, None)
                return _gone_sample(root_pid)
            cpu = 0.0
            rss = 0
            count = 0
            seen: set[int] = set()
            for found in procs:
                proc = self._cached(cache, found.pid, found)
                if proc is None:
                    continue
                seen.add(proc.pid)
                try:
                    with proc.oneshot():
                        if proc.status() == psutil.STATUS_ZOMBIE:
                            continue
                        cpu += proc.cpu_percent(None)
                        rss += proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.ZombieProcess):
                    continue
                except psutil.AccessDenied:
                    pass
                count += 1
            for pid in [p for p in cache if p not in seen]:
                del cache[pid]
            return {
                "running": True,
                "pid": root_pid,
                "cpu_percent": cpu,
                "memory_mb": rss / (1024 * 1024),
                "elapsed_seconds": elapsed,
                "num_processes": count,
            }

    def forget(self, root_pid: int) -> None:
        with self._lock:
            self._trees.pop(root_pid, None)

    @staticmethod
    def _cached(
        cache: dict[int, psutil.Process], pid: int, found: psutil.Process | None = None
    ) -> psutil.Process | None:
        proc = cache.get(pid)
        # is_running() also notices a reused pid, so a stale entry is never summed.
        if proc is not None and proc.is_running():
            return proc
        try:
            proc = found if found is not None else psutil.Process(pid)
        except psutil.NoSuchProcess:
            cache.pop(pid, None)
            return None
        cache[pid] = proc
        return proc


def _descendants(
    root_pid: int, children_of: dict[int, list[int]], cache: dict[int, psutil.Process]
) -> list[psutil.Process]:
    """The live descendants of root_pid, by a parent -> children map of the whole machine."""
    found: list[psutil.Process] = []
    todo = list(children_of.get(root_pid, ()))
    while todo:
        pid = todo.pop()
        proc = TreeSampler._cached(cache, pid)
        if proc is not None:
            found.append(proc)
        todo.extend(children_of.get(pid, ()))
    return found


# ------------------------------------------------------------------------------------------
# Killing


@dataclass
class KillReport:
    job_id: int | None
    signalled: bool
    sigkilled: bool
    survivors: int
    reason: str  # "terminated by SIGTERM", "killed with SIGKILL after 5.0 s grace", ...


@dataclass
class OrphanReport:
    job_id: int
    pid: int | None
    reason: str  # the error_message written (or that would be, with dry_run)
    verified: bool  # something alive was proven to be the job's
    killed: bool


@dataclass(frozen=True)
class _GroupCheck:
    ours: bool  # the group is proven to be the job's
    members: int  # live members of the group
    mismatch: bool  # something alive is in the way and is not ours


def _check_group(
    pgid: int | None,
    leader_pid: int | None,
    start_ticks: int | None,
    boot: str | None,
    marker: str | None,
) -> _GroupCheck:
    members = _group_members(pgid) if pgid is not None and pgid > 1 else []
    if pgid is not None and pgid > 1 and identity_matches(leader_pid, start_ticks, boot, marker):
        leader_stat = _read_stat(leader_pid or 0)
        if leader_stat is not None and leader_stat.pgrp == pgid:
            return _GroupCheck(True, len(members), False)
    # The leader may have died while its group lives on: then the members must carry the
    # marker. A group id is not handed out again while any member is alive.
    if marker and any(_environ_marker(pid) == marker for pid in members):
        return _GroupCheck(True, len(members), False)
    leader_alive = leader_pid is not None and (_read_stat(leader_pid) or _DEAD).alive
    return _GroupCheck(False, len(members), bool(members) or leader_alive)


_DEAD = _Stat("X", 0, 0, -1)


class ProcessManager:
    """Finds, samples and kills jobs' processes; only ever signals what it can prove is ours."""

    def __init__(
        self, store: Store, *, kill_grace: float = 5.0, instance_id: str | None = None
    ) -> None:
        self.store = store
        self.kill_grace = kill_grace
        self.instance_id = instance_id
        self.sampler = TreeSampler()

    def marker(self, job_id: int) -> str:
        return job_marker(self.store.install_id, job_id)

    # -- status and logs -------------------------------------------------------------------

    async def get_process_status(self, job_id: int) -> dict[str, Any]:
        """TreeSampler.sample of the job's recorded process, if it is still the job's."""
        job = await self.store.get_job(job_id)
        pid = None if job is None else job["process_id"]
        if job is None or pid is None:
            return _gone_sample(pid)
        ours = await asyncio.to_thread(
            identity_matches,
            pid,
            job["process_start_ticks"],
            job["process_boot_id"],
            self.marker(job_id),
        )
        if not ours:
            return _gone_sample(pid)
        return await asyncio.to_thread(self.sampler.sample, pid)

    async def get_log_path(self, job_id: int) -> Path | None:
        job = await self.store.get_job(job_id)
        if job is None or not job["log_file_path"]:
            return None
        return Path(job["log_file_path"])

    async def get_logs(self, job_id: int, lines: int = 50) -> list[str]:
        path = await self.get_log_path(job_id)
        if path is None:
            return []
        return await asyncio.to_thread(tail_lines, path, lines)

    # -- killing ---------------------------------------------------------------------------

    async def kill_process(self, job_id: int, *, grace: float | None = None) -> KillReport:
        """SIGTERM the job's group, wait up to grace, SIGKILL it; the status is not touched."""
        return await self._kill_job(job_id, grace=grace, escapees=False)

    async def kill_process_tree(self, job_id: int, *, grace: float | None = None) -> KillReport:
        """kill_process, plus descendants that left the group (setsid), found by marker."""
        return await self._kill_job(job_id, grace=grace, escapees=True)

    async def kill_group(
        self,
        pgid: int,
        *,
        marker: str | None,
        leader: ProcessIdentity | None,
        grace: float | None = None,
    ) -> KillReport:
        """Kill a group we started (leader identity or members' marker prove it), escalating,
        then any marker-carrying processes that left it."""
        return await self._kill(
            None,
            pgid=pgid,
            leader_pid=None if leader is None else leader.pid,
            start_ticks=None if leader is None else leader.start_ticks,
            boot=None if leader is None else leader.boot_id,
            marker=marker,
            escapees=marker is not None,
            grace=grace,
        )

    async def _kill_job(self, job_id: int, *, grace: float | None, escapees: bool) -> KillReport:
        job = await self.store.get_job(job_id)
        if job is None or job["process_id"] is None:
            return KillReport(job_id, False, False, 0, "not signalled: no process recorded")
        pid = int(job["process_id"])
        return await self._kill(
            job_id,
            pgid=int(job["process_group_id"] or pid),
            leader_pid=pid,
            start_ticks=job["process_start_ticks"],
            boot=job["process_boot_id"],
            marker=self.marker(job_id),
            escapees=escapees,
            grace=grace,
        )

    async def _kill(
        self,
        job_id: int | None,
        *,
        pgid: int,
        leader_pid: int | None,
        start_ticks: int | None,
        boot: str | None,
        marker: str | None,
        escapees: bool,
        grace: float | None,
    ) -> KillReport:
        grace = self.kill_grace if grace is None else grace
        check = await asyncio.to_thread(_check_group, pgid, leader_pid, start_ticks, boot, marker)
        strays: list[ProcessIdentity] = []
        if escapees and marker:
            in_group = set(await asyncio.to_thread(_group_members, pgid)) if check.ours else set()
            carriers = await asyncio.to_thread(_marker_carriers, marker)
            strays = [c for c in carriers if c.pid not in in_group]
        if not strays and not (check.ours and check.members):
            if check.mismatch:
                return KillReport(job_id, False, False, 0, "not signalled: identity mismatch")
            # Ours but only a zombie is left (or nothing at all): there is nobody to signal.
            return KillReport(job_id, False, False, 0, "already gone")
        group = pgid if check.ours else None

        signalled = False
        if group is not None:
            signalled = _signal_group(group, signal.SIGTERM)
        for stray in strays:
            signalled = _signal_one(stray, signal.SIGTERM) or signalled
        sigkilled = False
        if not await self._wait_gone(group, strays, grace):
            if group is not None:
                sigkilled = _signal_group(group, signal.SIGKILL)
            for stray in strays:
                sigkilled = _signal_one(stray, signal.SIGKILL) or sigkilled
            await self._wait_gone(group, strays, _AFTER_SIGKILL_SECONDS)
        late_killed = 0
        if escapees and marker:
            # Anything forked while we were waiting carries the marker too.
            late = await asyncio.to_thread(_marker_carriers, marker)
            late_killed = sum(_signal_one(proc, signal.SIGKILL) for proc in late)
            if late:
                await self._wait_gone(None, late, _AFTER_SIGKILL_SECONDS)
                strays = strays + late
        survivors = await asyncio.to_thread(_count_alive, group, strays)
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

    async def _wait_gone(
        self, pgid: int | None, strays: Iterable[ProcessIdentity], timeout: float
    ) -> bool:
        """True as soon as the group and the strays are gone (zombies count as gone)."""
        strays = list(strays)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if await asyncio.to_thread(_count_alive, pgid, strays) == 0:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(_POLL_SECONDS)

    # -- orphans ---------------------------------------------------------------------------

    async def cleanup_orphaned_processes(
        self,
        timeout_seconds: float = 300,
        *,
        live_instance_ids: Collection[str] = (),
        dry_run: bool = False,
        exclude_job_ids: Collection[int] = (),
    ) -> list[OrphanReport]:
        """Settle running jobs nobody is watching any more: kill what is provably theirs,
        mark them failed with an `orphaned:` reason. dry_run only reports.

        A live runner must pass the jobs it is waiting on as `exclude_job_ids`: it records
        their real endings itself, and a process that just exited would otherwise be
        settled here as "gone" in a race with its complete_job.
        """
        stale = {j["id"]: j for j in await self.store.get_orphaned_jobs(timeout_seconds)}
        instances = {i["id"]: i for i in await self.store.list_instances()}
        live = set(live_instance_ids)
        if self.instance_id is not None:
            live.add(self.instance_id)
        reports: list[OrphanReport] = []
        running = await self.store.get_active_jobs()
        for job in running:
            if job["id"] in exclude_job_ids:
                continue
            report = await self._settle_if_orphaned(
                job, stale, instances, live, timeout_seconds, dry_run
            )
            if report is not None:
                reports.append(report)
        return reports

    async def _settle_if_orphaned(
        self,
        job: dict[str, Any],
        stale: Mapping[int, dict[str, Any]],
        instances: Mapping[str, dict[str, Any]],
        live: set[str],
        timeout_seconds: float,
        dry_run: bool,
    ) -> OrphanReport | None:
        job_id = int(job["id"])
        pid = job["process_id"]
        marker = self.marker(job_id)
        causes: list[str] = []

        owner = job["instance_id"]
        if owner is not None and owner not in live:
            row = instances.get(owner)
            owner_alive = row is not None and await asyncio.to_thread(
                identity_matches, row["pid"], row["start_ticks"], row["boot_id"], None
            )
            if not owner_alive:
                causes.append(f"server instance {owner[:8]}… is gone")
        if job_id in stale:
            if job["last_heartbeat"] is None:
                causes.append("no heartbeat recorded")
            else:
                causes.append(f"heartbeat older than {timeout_seconds:g} s")

        leader_alive, leader_ours = await asyncio.to_thread(
            _leader_state, pid, job["process_start_ticks"], job["process_boot_id"], marker
        )
        check = await asyncio.to_thread(
            _check_group,
            job["process_group_id"] or pid,
            pid,
            job["process_start_ticks"],
            job["process_boot_id"],
            marker,
        )
        # Something alive is provably the job's: its leader, its group, or a process that
        # left the group but carries the marker.
        verified = leader_ours or (check.ours and check.members > 0)
        if not verified:
            verified = bool(await asyncio.to_thread(_marker_carriers, marker))
        process_cause = None
        if pid is None:
            process_cause = "no process recorded"
        elif not leader_alive:
            process_cause = f"process {pid} is gone"
        elif not leader_ours:
            process_cause = f"pid {pid} now belongs to another process"
            if not verified:
                process_cause += "; not signalled"
        if process_cause is not None:
            causes.append(process_cause)
        if not causes:
            return None

        message = f"{ORPHANED_PREFIX} " + "; ".join(causes)
        killed = False
        if verified and not dry_run:
            report = await self.kill_process_tree(job_id)
            killed = report.signalled
            message += f"; {report.reason}"
        if not dry_run:
            await self.store.fail_job(job_id, message)
        return OrphanReport(job_id, pid, message, verified, killed)


def _leader_state(
    pid: int | None, start_ticks: int | None, boot: str | None, marker: str | None
) -> tuple[bool, bool]:
    """(alive, ours) of a job's recorded leader; a zombie is not alive."""
    stat = _read_stat(pid) if pid is not None else None
    if stat is None or not stat.alive:
        return False, False
    return True, identity_matches(pid, start_ticks, boot, marker)


def _count_alive(pgid: int | None, strays: Iterable[ProcessIdentity]) -> int:
    count = len(_group_members(pgid)) if pgid is not None else 0
    return count + sum(1 for s in strays if _still_there(s))


__all__ = [
    "MARKER_ENV",
    "KillReport",
    "OrphanReport",
    "ProcessIdentity",
    "ProcessManager",
    "SpawnedProcess",
    "TreeSampler",
    "boot_id",
    "identity_matches",
    "job_marker",
    "read_identity",
    "read_lines",
    "spawn",
]
