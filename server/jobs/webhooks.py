"""Webhook delivery: signed POSTs from the database's queue, retried with backoff.

A delivery is claimed (its next attempt pushed a lease ahead) before it is tried, so a
server that dies mid-attempt tries it again after a restart, and the loop sleeps until
the next delivery is due or it is woken, never polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from server.jobs.webhook_targets import UnresolvableError, WebhookURLError, check_job_webhook
from server.tasks import cancel_and_wait

if TYPE_CHECKING:
    from server.config import Config
    from server.store import Store

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 3600.0
MAX_IN_FLIGHT = 16
# Statuses that say "later", besides every 5xx.
_RETRY_STATUSES = frozenset({408, 429})


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=HEX`: HMAC-SHA256 of `TIMESTAMP.BODY`, as Stripe and Slack sign theirs."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def backoff(attempt: int, base: float) -> float:
    """Seconds before the retry after attempt number `attempt` (1-based): doubling from
    `base`, capped, and jittered over its upper half so receivers that failed together are
    not all retried together."""
    delay = min(MAX_BACKOFF_SECONDS, base * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


class WebhookSender:
    """Delivers queued webhooks until cancelled; `wake()` says a new one is queued."""

    def __init__(self, store: Store, config: Config, session: aiohttp.ClientSession) -> None:
        self.store = store
        self.config = config
        self.session = session
        self._wake = asyncio.Event()
        self._attempts: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wake.set()

    @property
    def lease_seconds(self) -> float:
        return self.config.webhook_timeout + 1.0

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                room = MAX_IN_FLIGHT - len(self._attempts)
                wait = None  # all slots busy: the next attempt to finish wakes us
                if room > 0:
                    for delivery in await self.store.claim_due_webhooks(self.lease_seconds, limit=room):
                        task = asyncio.create_task(self._guarded(delivery), name=f"webhook-{delivery['id']}")
                        self._attempts.add(task)
                        task.add_done_callback(self._attempts.discard)
                    wait = await self.store.seconds_to_next_webhook()
                with contextlib.suppress(TimeoutError):
                    # Woken by a new delivery or a finished attempt, or when the next is due.
                    async with asyncio.timeout(None if wait is None else max(0.01, wait)):
                        await self._wake.wait()
        finally:
            await asyncio.gather(*(cancel_and_wait(t) for t in list(self._attempts)))

    async def _guarded(self, delivery: dict[str, Any]) -> None:
        try:
            await self._attempt(delivery)
        except Exception:  # one delivery's fault must not stop the others; its lease retries it
            log.exception("job %s: webhook delivery %s failed", delivery["job_id"], delivery["id"])
        finally:
            self._wake.set()

    async def _attempt(self, delivery: dict[str, Any]) -> None:
        body = delivery["body"].encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "transcriptor-webhook",
            "X-Transcriptor-Event": "job.ended",
            "X-Transcriptor-Delivery": str(delivery["id"]),
            "X-Transcriptor-Timestamp": timestamp,
        }
        if self.config.webhook_secret:
            headers["X-Transcriptor-Signature"] = sign(self.config.webhook_secret, timestamp, body)
        status: int | None = None
        error: str | None = None
        try:
            if delivery["url"] != self.config.webhook_url:
                # A per-job URL: its name may resolve elsewhere now than at upload.
                await check_job_webhook(delivery["url"], self.config)
            timeout = aiohttp.ClientTimeout(total=self.config.webhook_timeout)
            async with self.session.post(
                delivery["url"], data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as response:
                status = response.status
        except UnresolvableError as e:
            error = str(e)  # a network error: tried again
        except WebhookURLError as refused:
            await self._record(delivery, None, f"refused: {refused}", final=True)
            return
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        await self._record(delivery, status, error)

    async def _record(
        self, delivery: dict[str, Any], status: int | None, error: str | None, *, final: bool = False
    ) -> None:
        number = int(delivery["attempts"]) + 1
        delivered = not final and status is not None and 200 <= status < 300
        retry_in: float | None = None
        if not (final or delivered) and number < self.config.webhook_attempts and (
            status is None or status >= 500 or status in _RETRY_STATUSES
        ):
            retry_in = backoff(number, self.config.webhook_backoff)
        try:
            state = await self.store.record_webhook_attempt(
                delivery, status_code=status, error=error, delivered=delivered, retry_in=retry_in
            )
            log.log(
                logging.INFO if delivered else logging.WARNING,
                "job %s: webhook to %s, attempt %d: %s (%s)",
                delivery["job_id"], delivery["url"], number, status or error, state,
            )  # fmt: skip
        except sqlite3.IntegrityError:
            pass  # the job was deleted while its webhook was on the way
