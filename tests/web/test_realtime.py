"""Live sessions over /v1/realtime, driven by the official `openai` SDK against a real
server running the real live pipeline (tiny.en) on espeak-ng speech.

Every server event is validated against the SDK's own pydantic types.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.realtime import RealtimeTranscriptionSessionCreateRequest

from server.app import create_app
from server.jobs.state import REASON_CLIENT_DISCONNECTED
from tests.helpers.procs import alive_in_group
from tests.helpers.server_proc import ServerProcess
from tests.helpers.speech import append_events, pcm_of, speak, validate, word_set

INTENT = {"intent": "transcription"}
TEXTS = [
    "Please bring the red book to the kitchen table.",
    "The meeting has been moved to Thursday afternoon.",
]
KEYWORDS = [{"red", "book", "kitchen", "table"}, {"meeting", "moved", "thursday", "afternoon"}]


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[Any]]:
    path = tmp_path_factory.mktemp("speech") / "two.wav"
    spoken = speak(path, TEXTS)
    return pcm_of(path), spoken


def live_app(make_config: Callable[..., Any], **overrides: Any) -> Any:
    return create_app(make_config(**{"pipeline_command": (), "standby": 0, **overrides}))


def sdk(client: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="anything", max_retries=0)


async def job_of(client: Any, job_id: int) -> dict[str, Any]:
    return await (await client.get(f"/api/jobs/{job_id}")).json()


async def wait_job(
    client: Any, job_id: int, check: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while not check(job := await job_of(client, job_id)):
            await asyncio.sleep(0.02)
    return job


async def recv(connection: Any) -> Any:
    return validate(await connection.recv_bytes())


async def until(connection: Any, kind: str, seen: list[Any], timeout: float = 60) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            event = await recv(connection)
            seen.append(event)
            if event.type == kind:
                return event


@pytest.mark.slow
async def test_a_session_transcribes_speech_and_completes(aiohttp_client, make_config, speech):
    pcm, spoken = speech
    client = await aiohttp_client(live_app(make_config))
    api = sdk(client)
    seen: list[Any] = []
    async with api.realtime.connect(extra_query=INTENT) as connection:
        created = await recv(connection)
        assert created.type == "session.created"
        assert isinstance(created.session, RealtimeTranscriptionSessionCreateRequest)
        job_id = created.session.model_extra["job_id"]
        await connection.send(
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {
                        "input": {
                            "format": {"type": "audio/pcm", "rate": 24000},
                            "transcription": {"model": "whisper-1", "language": "en"},
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
                        }
                    },
                },
            }
        )
        updated = await until(connection, "session.updated", seen)
        assert updated.session.audio.input.transcription.language == "en"
        running = await wait_job(client, job_id, lambda j: j["status"] == "running")
        assert running["source"] == "live"
        for event in append_events(pcm):  # as fast as it goes: the gate counts samples, not time
            await connection.send(event)
        completed = []
        while len(completed) < len(TEXTS):
            completed.append(
                await until(connection, "conversation.item.input_audio_transcription.completed", seen)
            )
    job = await wait_job(client, job_id, lambda j: j["status"] not in ("queued", "running"), timeout=5)
    assert job["status"] == "completed", {k: job[k] for k in ("cancel_reason", "error_message", "exit_code")}
    job = await wait_job(client, job_id, lambda j: j["duration_seconds"] is not None, timeout=5)
    assert job["duration_seconds"] == pytest.approx(len(pcm) / 48000, abs=0.01)
    kinds = [e.type for e in seen]
    for kind in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
    ):
        assert kinds.count(kind) == len(TEXTS), kinds
    for keywords, event in zip(KEYWORDS, completed, strict=True):
        assert event.usage.type == "duration" and event.usage.seconds > 1
        assert keywords <= word_set(event.transcript), event.transcript
    # Deltas only append, each item's add up to text the final one mostly agrees with.
    for event in completed:
        deltas = "".join(e.delta for e in seen if e.type.endswith(".delta") and e.item_id == event.item_id)
        assert word_set(deltas) <= word_set(event.transcript) | word_set(deltas[: len(deltas) // 2])
    started = [e for e in seen if e.type == "input_audio_buffer.speech_started"]
    assert abs(started[0].audio_start_ms / 1000 - spoken[0].start) < 0.5
    committed = [e for e in seen if e.type == "input_audio_buffer.committed"]
    assert committed[0].previous_item_id is None and committed[1].previous_item_id == committed[0].item_id
    # The transcript stays, in every format, with times from the session's start.
    srt = await (await client.get(f"/api/jobs/{job_id}/transcript.srt")).text()
    assert "kitchen" in srt.lower() and "thursday" in srt.lower()
    document = await (await client.get(f"/api/jobs/{job_id}/transcript.json")).json()
    assert len(document["segments"]) == 2
    assert abs(document["segments"][1]["start"] - spoken[1].start) < 0.6
    for kind in ("txt", "vtt"):
        assert (await client.get(f"/api/jobs/{job_id}/transcript.{kind}")).status == 200


@pytest.mark.slow
async def test_bad_input_gets_error_events_and_the_session_lives_on(aiohttp_client, make_config):
    client = await aiohttp_client(live_app(make_config))
    async with sdk(client).realtime.connect(extra_query=INTENT) as connection:
        assert (await recv(connection)).type == "session.created"
        ws = connection._connection  # the websockets connection: raw frames the SDK would refuse
        bad = [
            ({"type": "response.create"}, "invalid_event"),
            ({"type": "input_audio_buffer.append", "audio": "not base64!"}, "invalid_base64"),
            (
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()},
                "invalid_audio",
            ),
            (
                {
                    "type": "session.update",
                    "session": {
                        "type": "transcription",
                        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
                    },
                },
                "unsupported_rate",
            ),
            ({"type": "session.update", "session": {"type": "realtime"}}, "invalid_value"),
            ({"type": "input_audio_buffer.append", "audio": "A" * (2 << 20)}, "frame_too_large"),
            ({"type": "input_audio_buffer.commit", "event_id": "mine"}, "input_audio_buffer_commit_empty"),
        ]
        for event, code in bad:
            await ws.send(json.dumps(event))
            answer = await recv(connection)
            assert answer.type == "error", answer
            assert answer.error.code == code, (event["type"], answer)
        await ws.send("{not json")
        assert (await recv(connection)).error.code == "invalid_json"
        # Still a working session: good audio is taken, and a clear is answered.
        await connection.send(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(4800)).decode()}
        )
        await connection.send({"type": "input_audio_buffer.clear"})
        assert (await recv(connection)).type == "input_audio_buffer.cleared"


@pytest.mark.slow
async def test_a_dropped_socket_cancels_the_job_and_its_processes_at_once(
    aiohttp_client, make_config, speech
):
    pcm, spoken = speech
    client = await aiohttp_client(live_app(make_config, kill_grace=5.0))
    ws = await client.ws_connect("/v1/realtime?intent=transcription")
    created = validate((await ws.receive()).data)
    job_id = created.session.model_extra["job_id"]
    for event in append_events(pcm[: int((spoken[0].end + 1.0) * 24000) * 2]):  # the first utterance
        await ws.send_str(json.dumps(event))
    async with asyncio.timeout(60):
        while (
            validate((await ws.receive()).data).type
            != "conversation.item.input_audio_transcription.completed"
        ):
            pass
    job = await wait_job(client, job_id, lambda j: j["status"] == "running" and j["process_group_id"])
    assert alive_in_group(job["process_group_id"])
    began = time.monotonic()
    await ws.close(code=4000)  # not a normal close
    job = await wait_job(client, job_id, lambda j: j["status"] not in ("queued", "running"), timeout=5)
    assert job["status"] == "cancelled" and job["cancel_reason"] == REASON_CLIENT_DISCONNECTED
    async with asyncio.timeout(1.0):
        while alive_in_group(job["process_group_id"]):
            await asyncio.sleep(0.02)
    assert time.monotonic() - began < 1.5
    # What it finished stays, in every format, though the session was cancelled.
    for kind in ("txt", "srt", "vtt", "json"):
        answer = await client.get(f"/api/jobs/{job_id}/transcript.{kind}")
        assert answer.status == 200 and "kitchen" in (await answer.text()).lower()


@pytest.mark.slow
async def test_no_free_slot_is_a_session_limit_error(aiohttp_client, make_config):
    client = await aiohttp_client(live_app(make_config, max_concurrent_jobs=1))
    first = await client.ws_connect("/v1/realtime?intent=transcription")
    assert validate((await first.receive()).data).type == "session.created"
    second = await client.ws_connect("/v1/realtime?intent=transcription")
    refused = validate((await second.receive()).data)
    assert refused.type == "error" and refused.error.code == "session_limit"
    assert (await second.receive()).type.name in ("CLOSE", "CLOSED")
    await first.close()


@pytest.mark.slow
async def test_a_silent_session_ends_after_the_idle_timeout(aiohttp_client, make_config):
    client = await aiohttp_client(live_app(make_config, live_idle_timeout=1.0))
    ws = await client.ws_connect("/v1/realtime?intent=transcription")
    job_id = validate((await ws.receive()).data).session.model_extra["job_id"]
    await ws.send_str(json.dumps(append_events(bytes(9600))[0]))
    async with asyncio.timeout(10):
        ended = validate((await ws.receive()).data)
    assert ended.type == "error" and ended.error.code == "idle_timeout"
    job = await wait_job(client, job_id, lambda j: j["status"] not in ("queued", "running"), timeout=10)
    assert job["status"] == "completed", {k: job[k] for k in ("cancel_reason", "error_message", "exit_code")}


async def test_a_session_whose_job_ends_on_its_own_is_told_and_closed(aiohttp_client, make_config):
    # The fake pipeline knows nothing of live sessions: it prints a few lines and exits.
    client = await aiohttp_client(create_app(make_config(standby=0)))
    ws = await client.ws_connect("/v1/realtime?intent=transcription")
    job_id = validate((await ws.receive()).data).session.model_extra["job_id"]
    async with asyncio.timeout(20):
        ended = validate((await ws.receive()).data)
    assert ended.type == "error" and ended.error.code == "session_ended"
    assert (await ws.receive()).type.name in ("CLOSE", "CLOSED")
    assert ws.close_code == 1011
    assert (await job_of(client, job_id))["status"] in ("completed", "failed")


async def test_only_the_transcription_intent(aiohttp_client, make_config):
    client = await aiohttp_client(live_app(make_config))
    answer = await client.get("/v1/realtime?model=gpt-realtime")
    assert answer.status == 400
    assert (await answer.json())["error"]["param"] == "intent"


def test_wav_helper_places_utterances(tmp_path: Path):
    spoken = speak(tmp_path / "one.wav", ["Hello there."], pause=0.5)
    assert spoken[0].start == pytest.approx(0.5) and spoken[0].end > 1.0


@pytest.mark.slow
async def test_a_warm_standby_takes_the_session(aiohttp_client, make_config, speech):
    pcm, _ = speech
    client = await aiohttp_client(live_app(make_config, standby=1))
    async with asyncio.timeout(60):  # the standby warms up first
        while (await (await client.get("/api/health")).json())["standby"]["ready"] < 1:
            await asyncio.sleep(0.05)
    async with sdk(client).realtime.connect(extra_query=INTENT) as connection:
        job_id = (await recv(connection)).session.model_extra["job_id"]
        for event in append_events(pcm[: len(pcm) // 2]):
            await connection.send(event)
        completed = await until(connection, "conversation.item.input_audio_transcription.completed", [])
        assert {"kitchen", "table"} <= word_set(completed.transcript)
    await wait_job(client, job_id, lambda j: j["status"] == "completed", timeout=5)
    log = await (await client.get(f"/api/jobs/{job_id}/log")).text()
    assert "warm start: took the job" in log and "using the standby's loaded worker" in log


@pytest.mark.slow
async def test_server_shutdown_ends_a_session_as_a_shutdown(tmp_path: Path):
    # A real server process: SIGTERM closes its sockets (1001) the way production does.
    server = ServerProcess(tmp_path / "data", ["--standby", "0"])
    await asyncio.to_thread(server.start)
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{server.url}/v1/realtime?intent=transcription")
            job_id = validate((await ws.receive()).data).session.model_extra["job_id"]
            await ws.send_str(json.dumps(append_events(bytes(9600))[0]))
            job = await asyncio.to_thread(server.wait_running, job_id)
            await asyncio.to_thread(server.stop)  # also checks that nothing outlives it
            assert (await ws.receive()).type.name in ("CLOSE", "CLOSED", "CLOSING")
    finally:
        await asyncio.to_thread(server.stop)
    with sqlite3.connect(tmp_path / "data" / "transcriptor.db") as db:
        row = db.execute(
            "SELECT status, cancel_reason FROM transcription_jobs WHERE id = ?", (job_id,)
        ).fetchone()
    assert row == ("cancelled", "server shutdown")
    assert not alive_in_group(job["process_group_id"])


async def test_the_token_guards_sessions_as_it_guards_v1(aiohttp_client, make_config):
    client = await aiohttp_client(live_app(make_config, token="s3cret"))
    refused = await client.get("/v1/realtime?intent=transcription", headers={"Authorization": "Bearer wrong"})
    assert refused.status == 401
    url = str(client.make_url("/v1"))
    good = openai.AsyncOpenAI(base_url=url, api_key="s3cret", max_retries=0)
    async with good.realtime.connect(extra_query=INTENT) as connection:
        assert (await recv(connection)).type == "session.created"
    bad = openai.AsyncOpenAI(base_url=url, api_key="wrong", max_retries=0)
    with pytest.raises(Exception, match="401"):
        async with bad.realtime.connect(extra_query=INTENT) as connection:
            await connection.recv()
    cross = await client.get(
        "/v1/realtime?intent=transcription",
        headers={"Authorization": "Bearer s3cret", "Origin": "http://evil.example"},
    )
    assert cross.status == 403
