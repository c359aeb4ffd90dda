"""The HTML pages: each view renders a skeleton plus the data the page starts from.

Everything live (job list, log, metrics, transcript) arrives later over /ws and is drawn by
the page's own script, so the views stay thin.
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from server import keys
from server.web.api import parse_job_id
from server.web.speakers import status as speakers_status
from server.web.speakers import with_speakers


async def page_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: headers every HTML response carries, error pages included."""
    if response.content_type == "text/html":
        # A page's address can carry ?token= or a job id; never hand it to another site.
        response.headers.setdefault("Referrer-Policy", "no-referrer")


# Offered in the model field's suggestion list; any other name or local folder still works.
MODEL_SUGGESTIONS = (
    "tiny.en",
    "tiny",
    "base.en",
    "base",
    "small.en",
    "small",
    "medium.en",
    "medium",
    "large-v3",
)

# (code, name) for the language menu; "auto" lets the model detect it.
LANGUAGES = (
    ("auto", "Auto-detect"),
    ("en", "English"),
    ("de", "German"),
    ("es", "Spanish"),
    ("fr", "French"),
    ("it", "Italian"),
    ("ja", "Japanese"),
    ("ko", "Korean"),
    ("nl", "Dutch"),
    ("pl", "Polish"),
    ("pt", "Portuguese"),
    ("ru", "Russian"),
    ("sv", "Swedish"),
    ("tr", "Turkish"),
    ("uk", "Ukrainian"),
    ("zh", "Chinese"),
)


@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, Any]:
    """The upload form, with the server's defaults filled in, and the (live) jobs table."""
    config = request.app[keys.CONFIG]
    return {
        "defaults": {
            "model": config.default_model,
            "language": "auto",
            "processes": config.default_processes,
            "threads": config.default_threads,
            "chunk_seconds": config.default_chunk_seconds,
            "overlap_seconds": config.default_overlap_seconds,
        },
        "max_upload_mb": config.max_upload_mb,
        "disconnect_grace": config.disconnect_grace,
        "models": MODEL_SUGGESTIONS,
        "languages": LANGUAGES,
        "containment": request.app[keys.EXECUTORS].containment,
        "job_memory_mb": config.job_memory_mb,
        "standby": await request.app[keys.EXECUTORS].standby_status(),
        "speakers": speakers_status(),
    }


@aiohttp_jinja2.template("job.html")
async def job_page(request: web.Request) -> dict[str, Any]:
    """One job: the row as it is now; the page's script subscribes for the rest."""
    raw_id = request.match_info["id"]
    job_id = parse_job_id(raw_id)
    job = await request.app[keys.STORE].get_job(job_id) if job_id is not None else None
    if job is None:
        raise web.HTTPNotFound(text=f"There is no job {raw_id[:20]}.")
    return {
        # The runner's view adds the live facts (queue position, latest metrics).
        "job": await with_speakers(job, request.app[keys.RUNNER].view(job)),
        "disconnect_grace": request.app[keys.CONFIG].disconnect_grace,
    }
