"""The benchmark side of a real server: tests.helpers.server_proc's ServerProcess, driven
from asyncio, plus an aiohttp session for websockets and concurrent requests.

ServerProcess owns the server's life (start, SIGTERM stop with a survivor check, SIGKILL);
its blocking calls run in a thread here so the benchmark's own event loop keeps reading.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psutil

import benchmarks.common  # noqa: F401  (puts the repo on sys.path)
from tests.helpers.audio import tone_wav
from tests.helpers.fake import FAKE_PIPELINE
from tests.helpers.fake import fake_pipeline_args as fake
from tests.helpers.server_proc import ServerProcess

__all__ = ["FAKE_PIPELINE", "BenchServer", "fake", "messages", "tone_wav"]


class BenchServer:
    """`async with BenchServer(*server_args) as server:` a started server, stopped on exit.

    Later flags win in argparse, so `server_args` may override ServerProcess's defaults
    (grace 1 s, heartbeat and metrics every 0.5 s).
    """

    def __init__(self, *args: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-")
        self.tmp = Path(self._tmp.name)
        self.proc = ServerProcess(data_dir=self.tmp / "data", args=list(args))
        self.session: aiohttp.ClientSession | None = None
        self._tone: Path | None = None

    @property
    def url(self) -> str:
        return self.proc.url

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def __aenter__(self) -> BenchServer:
        try:
            await asyncio.to_thread(self.proc.start)
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            if self.session is not None:
                await self.session.close()
            if self.proc.proc is not None:
                # SIGTERM, then a check that nothing it started outlives it. Shielded: a
                # Ctrl-C must not leave the server half-stopped.
                await asyncio.shield(asyncio.to_thread(self.proc.stop))
        finally:
            self._tmp.cleanup()

    def tone(self) -> Path:
        if self._tone is None:
            self._tone = tone_wav(self.tmp / "tone.wav", seconds=1.0)
        return self._tone

    # -- the API, without blocking the loop ------------------------------------------------

    async def get(self, path: str) -> Any:
        assert self.session is not None
        async with self.session.get(self.url + path) as response:
            response.raise_for_status()
            return await response.json()

    async def upload(self, audio: Path | None = None, **fields: Any) -> int:
        """POST /api/jobs (multipart, field `file`); returns the job id."""
        assert self.session is not None
        audio = audio or self.tone()
        form = aiohttp.FormData()
        for name, value in fields.items():
            form.add_field(name, str(value))
        # A file object, not bytes: aiohttp's form refuses a bytes value over 1 MB.
        with audio.open("rb") as file:
            form.add_field("file", file, filename=audio.name)
            async with self.session.post(self.url + "/api/jobs", data=form) as response:
                body = await response.json(content_type=None)
                if response.status != 201:
                    raise RuntimeError(f"upload refused ({response.status}): {body}")
        return int(body["id"])

    async def job(self, job_id: int) -> dict[str, Any]:
        return dict(await self.get(f"/api/jobs/{job_id}"))

    async def stop_job(self, job_id: int) -> int:
        assert self.session is not None
        async with self.session.post(f"{self.url}/api/jobs/{job_id}/stop") as response:
            await response.read()
            return response.status

    async def wait_status(self, job_id: int, statuses: Sequence[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["status"] in statuses:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout:g} s")
            await asyncio.sleep(0.02)

    async def wait_group(self, job_id: int, timeout: float = 15.0) -> tuple[int, int]:
        """(leader pid, process group) once the job runs."""
        deadline = time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job["status"] == "running" and job.get("process_id") and job.get("process_group_id"):
                return int(job["process_id"]), int(job["process_group_id"])
            if job["status"] in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} did not start: {job['status']} {job.get('error_message')}")
            await asyncio.sleep(0.02)

    def ws(self) -> Any:
        assert self.session is not None
        return self.session.ws_connect(self.url + "/ws", max_msg_size=0)

    async def wait_final(self, job_ids: Sequence[int], timeout: float = 30 * 60) -> dict[int, str]:
        """Each job's final status, followed over one /ws as pages do: polling the API took
        CPU from the very jobs a benchmark timed."""
        final: dict[int, str] = {}
        async with self.ws() as ws:
            for job_id in job_ids:
                await ws.send_json({"type": "subscribe", "job": job_id})
            async with asyncio.timeout(timeout):
                while len(final) < len(job_ids):
                    frame = await ws.receive()
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        raise RuntimeError(f"websocket ended: {frame.type!r}")
                    for m in messages(frame.data):
                        if m.get("type") == "status" and m.get("status") in FINAL:
                            final[int(m["job"])] = m["status"]
        return final

    def server_process(self) -> psutil.Process:
        return psutil.Process(self.pid)


FINAL = ("completed", "failed", "cancelled")


def messages(frame: str) -> list[dict[str, Any]]:
    """A /ws frame is one JSON object or an array of them."""
    data = json.loads(frame)
    return data if isinstance(data, list) else [data]


def group_members(leader: int) -> list[psutil.Process]:
    """The leader and its descendants, as psutil handles (create_time pins each identity)."""
    try:
        me = psutil.Process(leader)
        return [me, *me.children(recursive=True)]
    except psutil.Error:
        return []


def gone(procs: Sequence[psutil.Process]) -> bool:
    """True once none of `procs` lives (a zombie counts as gone: it runs nothing)."""
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.Error:
            continue
    return True
