"""Webhook deliveries queued in the database, and every attempt at one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite

from server.jobs.state import FINAL_STATES
from server.store.migrate import JOBS_TABLE, NOW_SQL

PENDING, DELIVERED, GAVE_UP = "pending", "delivered", "gave_up"
_ENDED = ", ".join(f"'{s.value}'" for s in sorted(FINAL_STATES))


class WebhookQueries:
    """The Store's webhook methods; the Store provides the connection plumbing."""

    _write: Callable[[Callable[[aiosqlite.Connection], Awaitable[Any]]], Awaitable[Any]]
    _fetchall: Callable[..., Awaitable[list[dict[str, Any]]]]
    _fetchone: Callable[..., Awaitable[dict[str, Any] | None]]

    async def settle_job(self, job_id: int, urls: list[str], body: str) -> bool:
        """Mark an ended job's aftercare done and queue its webhook to each URL (due now),
        in one transaction; False, queuing nothing, if it was settled already (a job is
        settled once, even when its ending is reported twice or found again at start-up)."""
        rows = [(job_id, url, body) for url in urls]

        async def write(db: aiosqlite.Connection) -> bool:
            cursor = await db.execute(
                f"UPDATE {JOBS_TABLE} SET settled_at = {NOW_SQL} WHERE id = ? AND settled_at IS NULL"
                f" AND status IN ({_ENDED})",
                (job_id,),
            )
            if cursor.rowcount != 1:
                return False
            await db.executemany(
                "INSERT INTO webhook_deliveries (job_id, url, body, next_attempt_at, created_at)"
                f" VALUES (?, ?, ?, {NOW_SQL}, {NOW_SQL})",
                rows,
            )
            return True

        return bool(await self._write(write))

    async def unsettled_jobs(self) -> list[dict[str, Any]]:
        """Ended jobs whose aftercare never ran: ended by the orphan reaper before the runner
        was there to report it, or while the server was going down."""
        return await self._fetchall(
            f"SELECT id FROM {JOBS_TABLE} WHERE settled_at IS NULL AND status IN ({_ENDED}) ORDER BY id"
        )

    async def claim_due_webhooks(self, lease_seconds: float, *, limit: int) -> list[dict[str, Any]]:
        """Pending deliveries whose next attempt is due, oldest first; each one's next
        attempt moves `lease_seconds` ahead, so it is not claimed twice, and a server that
        dies while trying it tries again once the lease runs out."""

        async def claim(db: aiosqlite.Connection) -> list[dict[str, Any]]:
            rows = [
                dict(r)
                for r in await db.execute_fetchall(
                    f"""SELECT * FROM webhook_deliveries WHERE state = '{PENDING}'
                        AND next_attempt_at <= {NOW_SQL} ORDER BY next_attempt_at, id LIMIT ?""",
                    (limit,),
                )
            ]
            await db.executemany(
                "UPDATE webhook_deliveries SET next_attempt_at ="
                " strftime('%Y-%m-%d %H:%M:%f', 'now', ?) WHERE id = ?",
                [(f"+{lease_seconds:.3f} seconds", r["id"]) for r in rows],
            )
            return rows

        result: list[dict[str, Any]] = await self._write(claim)
        return result

    async def seconds_to_next_webhook(self) -> float | None:
        """Seconds until the earliest pending delivery is due (<= 0: due now); None if none."""
        row = await self._fetchone(
            f"""SELECT (julianday(MIN(next_attempt_at)) - julianday('now')) * 86400.0 AS wait
                FROM webhook_deliveries WHERE state = '{PENDING}'"""
        )
        return None if row is None or row["wait"] is None else float(row["wait"])

    async def record_webhook_attempt(
        self,
        delivery: dict[str, Any],
        *,
        status_code: int | None,
        error: str | None,
        delivered: bool,
        retry_in: float | None = None,
    ) -> str:
        """One attempt's outcome; the delivery is delivered, tried again in `retry_in`
        seconds, or (neither) given up on. Returns its new state."""
        state = DELIVERED if delivered else PENDING if retry_in is not None else GAVE_UP

        async def write(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO webhook_attempts (delivery_id, job_id, url, status_code, error, at)"
                f" VALUES (?, ?, ?, ?, ?, {NOW_SQL})",
                (delivery["id"], delivery["job_id"], delivery["url"], status_code, error),
            )
            await db.execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, state = ?,"
                " next_attempt_at = strftime('%Y-%m-%d %H:%M:%f', 'now', ?) WHERE id = ?",
                (state, f"+{max(0.0, retry_in or 0.0):.3f} seconds", delivery["id"]),
            )

        await self._write(write)
        return state

    async def webhook_attempts(self, job_id: int) -> list[dict[str, Any]]:
        """Every attempt to deliver the job's webhooks, oldest first."""
        return await self._fetchall(
            "SELECT a.url, a.status_code, a.error, a.at, d.state, d.attempts"
            " FROM webhook_attempts AS a JOIN webhook_deliveries AS d ON d.id = a.delivery_id"
            " WHERE a.job_id = ? ORDER BY a.id",
            (job_id,),
        )

    async def webhook_deliveries(self, job_id: int) -> list[dict[str, Any]]:
        return await self._fetchall(
            "SELECT id, url, state, attempts, next_attempt_at, created_at"
            " FROM webhook_deliveries WHERE job_id = ? ORDER BY id",
            (job_id,),
        )
