"""Ended jobs: retry one on the same upload, delete one with everything it left, and
the attempts at its webhooks."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from aiohttp import web

from server import keys
from server.jobs.joblog import index_path
from server.store.library import JobStateError
from server.web.api import job_or_404
from server.web.errors import ApiError


async def retry_job(request: web.Request) -> web.Response:
    """POST: a new job with the failed or cancelled job's file and options (201)."""
    job = await job_or_404(request)
    if not await asyncio.to_thread(Path(job["original_path"]).is_file):
        raise ApiError(409, f"job {job['id']}'s upload is gone; it cannot be retried")
    store, runner = request.app[keys.STORE], request.app[keys.RUNNER]
    try:
        new = await store.retry_job(job["id"])
    except JobStateError as error:
        raise ApiError(409, str(error)) from None
    if new is None:
        raise ApiError(404, f"no job {job['id']}")
    runner.submit(new)  # queues and tells the job list
    return web.json_response(runner.view(new), status=201)


def _remove_files(job: dict[str, Any]) -> None:
    if not job["upload_shared"]:
        Path(job["original_path"]).unlink(missing_ok=True)
    if job.get("log_file_path"):
        path = Path(job["log_file_path"])
        path.unlink(missing_ok=True)
        index_path(path).unlink(missing_ok=True)  # the log's replay index
    if job.get("output_path"):
        shutil.rmtree(job["output_path"], ignore_errors=True)


async def delete_job(request: web.Request) -> web.Response:
    """DELETE an ended job: its row (and with it transcript, search entries, edits,
    metrics, webhooks), its upload unless a retry still uses it, its outputs and log."""
    job = await job_or_404(request)
    if request.app[keys.RUNNER].is_active(job["id"]):
        raise ApiError(409, f"job {job['id']} is {job['status']}; stop it first")
    try:
        deleted = await request.app[keys.STORE].delete_job(job["id"])
    except JobStateError as error:
        raise ApiError(409, str(error)) from None
    if deleted is None:
        raise ApiError(404, f"no job {job['id']}")
    await asyncio.to_thread(_remove_files, deleted)
    return web.json_response({"id": job["id"], "deleted": True})


async def job_webhooks(request: web.Request) -> web.Response:
    """Every attempt at the job's webhooks ({url, status_code, error, at}), and each
    delivery's state."""
    job = await job_or_404(request)
    store = request.app[keys.STORE]
    # Deliveries first: attempts read after them include every attempt their states count.
    deliveries = await store.webhook_deliveries(job["id"])
    attempts = await store.webhook_attempts(job["id"])
    return web.json_response({"attempts": attempts, "deliveries": deliveries})
