"""job_metrics: one row per sample of a job's process tree, for the charts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiosqlite

from server.store.migrate import NOW_SQL


class MetricsQueries:
    """The Store's metrics methods; the Store provides the connection plumbing."""

    _write: Callable[[Callable[[aiosqlite.Connection], Awaitable[Any]]], Awaitable[Any]]
    _fetchall: Callable[..., Awaitable[list[dict[str, Any]]]]

    async def record_metrics(
        self, job_id: int, *, cpu_percent: float, memory_mb: float, num_processes: int
    ) -> None:
        await self.record_metrics_many([(job_id, cpu_percent, memory_mb, num_processes)])

    async def record_metrics_many(self, samples: Iterable[tuple[int, float, float, int]]) -> None:
        """(job_id, cpu_percent, memory_mb, num_processes) samples, in one transaction."""
        rows = [tuple(s) for s in samples]
        if not rows:
            return

        async def body(db: aiosqlite.Connection) -> None:
            await db.executemany(
                "INSERT INTO job_metrics (job_id, time, cpu_percent, memory_mb, num_processes)"
                f" VALUES (?, {NOW_SQL}, ?, ?, ?)",
                rows,
            )

        await self._write(body)

    async def get_metrics(self, job_id: int, *, limit: int = 600) -> list[dict[str, Any]]:
        """The job's last `limit` samples, oldest first."""
        return await self._fetchall(
            """SELECT job_id, time, cpu_percent, memory_mb, num_processes FROM (
                   SELECT * FROM job_metrics WHERE job_id = ? ORDER BY id DESC LIMIT ?
               ) ORDER BY id""",
            (job_id, limit),
        )
