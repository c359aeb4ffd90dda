"""Websocket subscribe at the exact moment a job ends, with the interleaving forced."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from server import keys
from server.app import create_app
from tests.helpers.app_api import upload, wait_status
from tests.helpers.wsclient import collect_until, is_final_status

FINAL = {"completed", "failed", "cancelled"}


def called_from_subscribe() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "subscribe" and frame.f_code.co_filename.endswith("ws.py"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


class PausedRowRead:
    """Wraps the store's get_job: the first read made by a websocket subscribe waits until
    the test releases it; every other read (runner, API) goes straight through."""

    def __init__(self, store: Any) -> None:
        self.get_job = store.get_job
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.paused = False

    async def __call__(self, job_id: int) -> Any:
        row = await self.get_job(job_id)
        if not self.paused and called_from_subscribe():
            self.paused = True
            self.entered.set()
            await self.release.wait()
        return row


async def wait_until(condition: Any, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("other_watcher", [False, True], ids=["alone", "channel-kept-by-another"])
async def test_subscribe_racing_the_end_gets_the_final_status(
    aiohttp_client: Any, make_config: Any, tone: Path, tmp_path: Path, monkeypatch: Any,
    other_watcher: bool,
) -> None:
    gate = tmp_path / "gate"
    config = make_config("--gate", str(gate), "--lines", "20", "--interval", "0")
    app = create_app(config)
    client = await aiohttp_client(app)
    job = await (await upload(client, tone, on_disconnect="keep")).json()
    await wait_status(client, job["id"], {"running"})
    # Another socket on the job keeps its channel alive after the end.
    other = await client.ws_connect("/ws")
    if other_watcher:
        await other.send_json({"type": "subscribe", "job": job["id"], "since": 0})
        await collect_until(other, lambda m: m["type"] == "status")
    pause = PausedRowRead(app[keys.STORE])
    monkeypatch.setattr(app[keys.STORE], "get_job", pause)

    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"], "since": 0})
        async with asyncio.timeout(20):
            await pause.entered.wait()  # the subscribe holds a `running` row now
        gate.touch()
        await wait_status(client, job["id"], FINAL)
        runner = app[keys.RUNNER]
        await wait_until(lambda: not runner.is_active(job["id"]))
        pause.release.set()
        # A finished job's replay sends its status first, then its lines: wait for both.
        got: set[str] = set()

        def ended(message: dict[str, Any]) -> bool:
            if is_final_status(message):
                got.add("status")
            if message["type"] == "log" and message["line"] == "done":
                got.add("done")
            return got == {"status", "done"}

        seen = await collect_until(ws, ended, timeout=10)

    assert [m["status"] for m in seen if m["type"] == "status"] == ["completed"]
    seqs = [m["seq"] for m in seen if m["type"] == "log"]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 20
    if not other_watcher:
        assert app[keys.CHANNELS].find(job["id"]) is None, "a channel was made for a finished job"
    await other.close()
