"""JSON endpoints. Errors become {"error": ...} through server.errors.error_middleware."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from pipeline.models import ModelError, find_local, resolve_model
from server import keys
from server.config import Config
from server.jobs.channels import Subscriber
from server.jobs.logtail import tail_lines
from server.jobs.state import REASON_STOPPED, JobStatus
from server.web.errors import ApiError
from server.web.hooks import job_webhook
from server.web.speakers import renamed, speakers_option, with_speakers
from server.web.speakers import status as speakers_status
from server.web.uploads import Upload, UploadReceiver

MAX_LOG_LINES = 10_000
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LANGUAGE = re.compile(r"^(auto|[a-z]{2,3})$")


def _number(fields: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = fields.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a number, not {raw[:40]!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low:g} and {high:g}")
    return value


def job_options(fields: dict[str, str], request: web.Request) -> dict[str, Any]:
    """Validated job options from the upload form, with the server's defaults."""
    config = request.app[keys.CONFIG]
    model = fields.get("model") or config.default_model
    if not _MODEL_NAME.match(model):
        raise ApiError(400, f"unknown model name {model[:40]!r}: use a name such as tiny.en")
    language = (fields.get("language") or "auto").lower()
    if not _LANGUAGE.match(language):
        raise ApiError(400, "language must be 'auto' or a language code such as 'en'")
    processes = _number(fields, "processes", config.default_processes, 1, 16)
    threads = _number(fields, "threads", config.default_threads, 1, 64)
    if processes != int(processes) or threads != int(threads):
        raise ApiError(400, "processes and threads must be whole numbers")
    chunk = _number(fields, "chunk_seconds", config.default_chunk_seconds, 0, 3600)
    overlap = _number(fields, "overlap_seconds", config.default_overlap_seconds, 0, 60)
    if chunk and overlap * 2 >= chunk:
        raise ApiError(400, "overlap_seconds must be less than half of chunk_seconds")
    speakers = speakers_option(fields.get("speakers"))
    on_disconnect = fields.get("on_disconnect") or "cancel"
    if on_disconnect not in {"cancel", "keep"}:
        raise ApiError(400, "on_disconnect must be 'cancel' or 'keep'")
    return {
        "model": model,
        "language": language,
        "processes": int(processes),
        "threads": int(threads),
        "chunk_seconds": chunk,
        "overlap_seconds": overlap,
        "on_disconnect": on_disconnect,
        **({"pipeline_options": json.dumps({"speakers": speakers})} if speakers != "off" else {}),
    }


async def check_model_is_here(model: str, config: Config) -> None:
    """Refuse a job whose model the built-in pipeline could not load, before it is stored.

    Not checked: the default model (the server's own choice), a custom pipeline command
    (model names mean what it says) and Ray (the cluster's nodes hold their own). A first
    check of another name imports faster-whisper's model table here (about 50 MB, 0.4 s).
    """
    if model == config.default_model or config.pipeline_command or config.executor != "local":
        return
    # Downloads allowed: only an unknown name is refused; a known one is fetched by the job.
    lookup = find_local if config.allow_model_downloads else resolve_model
    try:
        await asyncio.to_thread(lookup, model)
    except ModelError as error:
        raise ApiError(400, str(error)) from None


def parse_job_id(raw: str) -> int | None:
    """The job id in a URL, or None if it cannot name a job.

    ASCII digits only (str.isdigit also accepts '²', which int() refuses), and within
    SQLite's integer range (a larger id makes the query raise OverflowError).
    """
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        return None
    value = int(raw)
    return value if 0 < value < 2**63 else None


async def job_or_404(request: web.Request) -> dict[str, Any]:
    """The job the URL's {id} names, or a 404."""
    raw = request.match_info["id"]
    job_id = parse_job_id(raw)
    job = await request.app[keys.STORE].get_job(job_id) if job_id is not None else None
    if job is None:
        raise ApiError(404, f"no job {raw[:20]!r}")
    return job


async def submit_job(
    request: web.Request,
    upload: Upload,
    make_options: Callable[[], Awaitable[dict[str, Any]]],
    *,
    follower: Subscriber | None = None,
) -> dict[str, Any]:
    """The one way a request becomes a job (/api/jobs and /v1/): the row from the upload
    and `make_options()` (the upload is discarded if either refuses), then queued. A
    `follower` subscribes before the job is queued, so it misses nothing of it."""
    try:
        options = await make_options()
        webhook_url = options.pop("webhook_url", None)  # a column create_job does not take
        job = await request.app[keys.STORE].create_job(
            filename=upload.filename,
            original_path=str(upload.path),
            duration_seconds=upload.duration_seconds,
            **options,
        )
        if webhook_url:
            await request.app[keys.STORE].update_job(job["id"], webhook_url=webhook_url)
            job["webhook_url"] = webhook_url
    except BaseException:
        upload.discard()
        raise
    if follower is not None:
        request.app[keys.CHANNELS].subscribe(job["id"], follower)
    runner = request.app[keys.RUNNER]
    runner.submit(job)
    return runner.view(job)


async def create_job(request: web.Request) -> web.Response:
    upload: Upload = await UploadReceiver(request.app[keys.CONFIG]).receive(request)

    async def options() -> dict[str, Any]:
        chosen = job_options(upload.fields, request)
        await check_model_is_here(chosen["model"], request.app[keys.CONFIG])
        chosen["webhook_url"] = await job_webhook(upload.fields, request.app[keys.CONFIG])
        return chosen

    return web.json_response(await submit_job(request, upload, options), status=201)


async def list_jobs(request: web.Request) -> web.Response:
    runner = request.app[keys.RUNNER]
    jobs = await request.app[keys.STORE].list_jobs()
    return web.json_response({"jobs": [runner.view(job) for job in jobs]})


async def get_job(request: web.Request) -> web.Response:
    job = await job_or_404(request)
    return web.json_response(await with_speakers(job, request.app[keys.RUNNER].view(job)))


async def rename_speakers(request: web.Request) -> web.Response:
    """PATCH /api/jobs/{id}/speakers {"A": "Maria"}: names stored with the job."""
    job = await job_or_404(request)
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, 'send a JSON object such as {"A": "Maria"}') from None
    names = await asyncio.to_thread(renamed, job, body)
    await request.app[keys.STORE].update_job(job["id"], speaker_names=names)
    job = await job_or_404(request)
    view = await with_speakers(job, request.app[keys.RUNNER].view(job))
    request.app[keys.CHANNELS].publish_job(view)
    return web.json_response(view)


async def stop_job(request: web.Request) -> web.Response:
    job = await job_or_404(request)
    if JobStatus(job["status"]).is_final:
        raise ApiError(409, f"job {job['id']} already ended ({job['status']})")
    runner = request.app[keys.RUNNER]
    await runner.cancel(job["id"], REASON_STOPPED)
    job = await job_or_404(request)
    return web.json_response(runner.view(job))


async def job_logs(request: web.Request) -> web.Response:
    job = await job_or_404(request)
    try:
        count = int(request.query.get("lines", "50"))
    except ValueError:
        raise ApiError(400, "lines must be a whole number") from None
    if not 0 < count <= MAX_LOG_LINES:
        raise ApiError(400, f"lines must be between 1 and {MAX_LOG_LINES}")
    path = job.get("log_file_path")
    lines = await asyncio.to_thread(tail_lines, Path(path), count) if path else []
    return web.json_response({"lines": lines})


async def job_log_file(request: web.Request) -> web.StreamResponse:
    job = await job_or_404(request)
    path = job.get("log_file_path")
    if not path or not await asyncio.to_thread(os.path.isfile, path):
        raise ApiError(404, f"job {job['id']} has no log yet")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Disposition": f'attachment; filename="job-{job["id"]}.log"',
        },
    )


async def job_metrics(request: web.Request) -> web.Response:
    job = await job_or_404(request)
    samples = await request.app[keys.STORE].get_metrics(job["id"])
    return web.json_response({"metrics": samples})


async def health(request: web.Request) -> web.Response:
    runner, executors = request.app[keys.RUNNER], request.app[keys.EXECUTORS]
    stats = runner.stats()
    body: dict[str, Any] = {
        "status": "ok",
        "running": stats.running,
        "queued": stats.queued,
        "instance": runner.instance_id,
        # Live asyncio tasks, so a leak (a socket's writer, a grace timer) shows from outside.
        "tasks": len(asyncio.all_tasks()),
        "containment": executors.containment,
        # Events a test (or an operator) can wait on instead of sleeping: sockets open,
        # disconnect graces pending and run out, orphan passes finished.
        "websockets": len(request.app[keys.SOCKETS]),
        "disconnect_timers": stats.disconnect_timers,
        "graces_expired": stats.graces_expired,
        "orphan_passes": request.app[keys.REAPER].passes,
        "speakers": speakers_status(),
    }
    probe = request.app.get(keys.LAG_PROBE)
    if probe is not None:
        body["loop_lag_ms"] = probe.summary()
    standby = await executors.standby_status()
    if standby is not None:
        body["standby"] = standby
    return web.json_response(body)
