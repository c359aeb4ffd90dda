"""What follows a job's ending: its transcript goes into the database (for edits and
search) and its webhooks are queued. Called back by the runner, never blocking it."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from server.jobs.state import JobStatus
from server.jobs.transcripts import EXPORTS, ensure_stored, import_missing

if TYPE_CHECKING:
    from server.config import Config
    from server.jobs.webhooks import WebhookSender
    from server.store import Store

log = logging.getLogger(__name__)
DRAIN_SECONDS = 5.0


def webhook_body(job: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The job's final state, as a webhook receiver gets it (fields at the top level)."""
    job_url = f"{base_url}/api/jobs/{job['id']}"
    completed = job["status"] == JobStatus.COMPLETED
    return {
        "event": "job.ended",
        "id": job["id"],
        "status": job["status"],
        "error_message": job.get("error_message"),
        "cancel_reason": job.get("cancel_reason"),
        "exit_code": job.get("exit_code"),
        "filename": job["filename"],
        "model": job.get("model"),
        "duration_seconds": job.get("duration_seconds"),
        "created_at": job.get("created_at"),
        "finished_at": job.get("finished_at"),
        "retry_of": job.get("retry_of"),
        "job_url": job_url,
        "page_url": f"{base_url}/jobs/{job['id']}",
        "transcript_urls": {kind: f"{job_url}/transcript.{kind}" for kind in EXPORTS} if completed else {},
    }


class Aftercare:
    """Takes ended job ids from the runner's callback and settles each in its own task."""

    def __init__(self, store: Store, config: Config, sender: WebhookSender) -> None:
        self.store = store
        self.config = config
        self.sender = sender
        self._ended: asyncio.Queue[int] = asyncio.Queue()
        self.settled = 0  # jobs done with, for tests and /api/health
        self._current: asyncio.Future[None] | None = None
        self._following = asyncio.Event()

    def following(self) -> None:
        """The runner reports endings now: look for the ones nobody reported."""
        self._following.set()

    def job_ended(self, job_id: int) -> None:
        """The runner's on_ended callback: queue, never wait."""
        self._ended.put_nowait(job_id)

    async def run(self) -> None:
        imported = await import_missing(self.store)
        if imported:
            log.info("read %d finished transcripts into the database", imported)
        # Endings no callback reported: a previous instance's jobs the orphan reaper settled
        # before the runner started, or endings recorded as a server went down. Looked for
        # once the callback is in place, so none falls between the two.
        await self._following.wait()
        for job in await self.store.unsettled_jobs():
            self.job_ended(job["id"])
        while True:
            job_id = await self._ended.get()
            # Shielded: a shutdown cancelling this loop lets drain() finish the job's aftercare.
            self._current = asyncio.ensure_future(self._settle(job_id))
            await asyncio.shield(self._current)

    async def drain(self) -> None:
        """Settle what is queued still (the endings of a shutdown), bounded in time."""
        async with asyncio.timeout(DRAIN_SECONDS):
            if self._current is not None:
                await self._current
            while not self._ended.empty():
                await self._settle(self._ended.get_nowait())

    async def _settle(self, job_id: int) -> None:
        try:
            job = await self.store.get_job(job_id)
            if job is None:
                return  # deleted already
            if job["status"] == JobStatus.COMPLETED:
                await ensure_stored(self.store, job)
            urls = [u for u in (self.config.webhook_url, job.get("webhook_url")) if u]
            body = json.dumps(webhook_body(job, self.config.node_url), ensure_ascii=False)
            if await self.store.settle_job(job_id, urls, body) and urls:
                self.sender.wake()
        except Exception:  # one job's aftercare must not end the others'
            log.exception("job %s: could not settle after its ending", job_id)
        finally:
            self.settled += 1
