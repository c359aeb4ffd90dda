"""Jobs through the JSON API of an in-process app (an aiohttp test client): upload, and
wait on what a job does. `tests/helpers/health.py` has /api/health."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

LARGE_UPLOAD = 1_000_000  # bytes; aiohttp refuses bytes values this large, a file streams


async def upload(client: Any, path: Path, filename: str | None = None, **fields: Any) -> Any:
    """POST /api/jobs with `path` as the file and `fields` as form fields; the response."""
    if path.stat().st_size >= LARGE_UPLOAD:
        with path.open("rb") as data:
            return await client.post("/api/jobs", data=_form(data, filename or path.name, fields))
    return await client.post("/api/jobs", data=_form(path.read_bytes(), filename or path.name, fields))


def _form(data: Any, filename: str, fields: dict[str, Any]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename)
    for name, value in fields.items():
        form.add_field(name, str(value))
    return form


async def wait_status(client: Any, job_id: int, wanted: set[str], timeout: float = 20) -> dict:
    """Poll the job until its status is one of `wanted`; the job's JSON."""
    async with asyncio.timeout(timeout):
        while True:
            job = await (await client.get(f"/api/jobs/{job_id}")).json()
            if job["status"] in wanted:
                return job
            await asyncio.sleep(0.05)


async def wait_for_line(client: Any, job_id: int, timeout: float = 10) -> None:
    """Wait until the job's log has its first line."""
    async with asyncio.timeout(timeout):
        while not (await (await client.get(f"/api/jobs/{job_id}/logs?lines=1")).json())["lines"]:
            await asyncio.sleep(0.05)
