"""CPU and memory of process trees, from one pass over /proc per sample.

Hand-written over psutil's children(): that reads every process's stat once per tree, and
was most of the monitor's cost with many jobs (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psutil

from server.procs.identity import all_stats

MIB = 1024 * 1024  # every *_mb figure this project shows or takes is MiB


@dataclass(frozen=True)
class Sample:
    """CPU and memory of one job's processes at one moment, however they were measured
    (this /proc sampler, a job's cgroup, or a Ray node's report). Memory is in bytes, as
    measured; it becomes MiB only where a person reads it (`fields`)."""

    running: bool
    pid: int | None
    cpu_percent: float  # 100 = one core
    memory_bytes: int
    elapsed_seconds: float
    num_processes: int
    memory_peak_bytes: int | None = None  # only a cgroup's memory charge keeps a peak

    def fields(self) -> dict[str, Any]:
        """As the API, the websocket and the CLI show it: rounded, memory also in MiB."""
        shown: dict[str, Any] = {
            "running": self.running,
            "pid": self.pid,
            "cpu_percent": round(self.cpu_percent, 1),
            "memory_bytes": self.memory_bytes,
            "memory_mb": round(self.memory_bytes / MIB, 1),
            "elapsed_seconds": round(self.elapsed_seconds, 1),
            "num_processes": self.num_processes,
        }
        if self.memory_peak_bytes is not None:
            shown["memory_peak_mb"] = round(self.memory_peak_bytes / MIB, 1)
        return shown


def gone_sample(pid: int | None) -> Sample:
    return Sample(
        running=False, pid=pid, cpu_percent=0.0, memory_bytes=0, elapsed_seconds=0.0, num_processes=0
    )


class TreeSampler:
    """CPU and memory of a process tree, summed over the root and all its descendants.

    Keeps one psutil.Process per pid, so cpu_percent() is a real delta since the previous
    sample (the first sample of a process reports 0). Synchronous; run it with
    asyncio.to_thread. A lock makes concurrent calls from several threads safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trees: dict[int, dict[int, psutil.Process]] = {}

    def sample_many(self, root_pids: Iterable[int]) -> dict[int, Sample]:
        """CPU and memory of each root's tree, finding every tree's members in one pass over /proc.

        psutil's children() reads the stat of every process on the machine; once per job
        per second, that was most of the monitor's cost (benchmarks/RESULTS.md).
        """
        children_of: dict[int, list[int]] = {}
        for pid, stat in all_stats().items():
            if stat.alive:
                children_of.setdefault(stat.ppid, []).append(pid)
        return {pid: self._sample(pid, children_of) for pid in root_pids}

    def _sample(self, root_pid: int, children_of: dict[int, list[int]]) -> Sample:
        with self._lock:
            cache = self._trees.setdefault(root_pid, {})
            root = self._cached(cache, root_pid)
            try:
                if root is None or root.status() == psutil.STATUS_ZOMBIE:
                    raise psutil.NoSuchProcess(root_pid)
                elapsed = max(0.0, time.time() - root.create_time())
                procs = [root, *descendants(root_pid, children_of, cache)]
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                self._trees.pop(root_pid, None)
                return gone_sample(root_pid)
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
            return Sample(
                running=True,
                pid=root_pid,
                cpu_percent=cpu,
                memory_bytes=rss,
                elapsed_seconds=elapsed,
                num_processes=count,
            )

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


def descendants(
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
