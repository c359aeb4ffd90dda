"""What a cluster node may ask of the server: its own job's audio, once.

A node holds no access token. It proves itself with the job's one-time secret, which
the server keeps only as a hash and forgets at the first download, so a secret seen in
Ray's job details afterwards opens nothing.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aiohttp import web

from pipeline.ray_entry import SECRET_HEADER
from server import keys
from server.executors.ray import secret_hash
from server.web.api import parse_job_id
from server.web.errors import ApiError

# What cluster nodes call: the token middleware lets it through, each handler checks its
# job's own secret.
NODE_PREFIX = "/api/node/"
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


async def job_audio(request: web.Request) -> web.StreamResponse:
    job_id = parse_job_id(request.match_info["id"])
    secret = request.headers.get(SECRET_HEADER, "")
    store = request.app[keys.STORE]
    # One answer for every refusal: it tells a guesser nothing about which jobs exist.
    if job_id is None or not secret or not await store.consume_job_secret(job_id, secret_hash(secret)):
        raise ApiError(403, "not a valid job secret (each is good for one download)")
    job = await store.get_job(job_id)
    path = Path(job["original_path"]) if job else None
    if path is None or not await asyncio.to_thread(path.is_file):
        raise ApiError(404, f"job {job_id} has no audio")
    suffix = path.suffix if _SUFFIX.match(path.suffix) else ""
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="input{suffix}"',
        },
    )
