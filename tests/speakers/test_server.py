"""Speakers through the server: the upload option, what a job found, renaming, exports
with names, health, and OpenAI's diarized_json through the official SDK."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.audio import TranscriptionDiarized

from server.app import create_app
from tests.helpers.app_api import wait_status
from tests.helpers.fake import fake_pipeline_args
from tests.helpers.health import health
from tests.helpers.server_proc import ServerProcess


async def upload(client: Any, path: Path, **fields: str) -> Any:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    with path.open("rb") as audio:  # a file object: aiohttp refuses bytes over 1 MB
        form.add_field("file", audio, filename=path.name)
        return await client.post("/api/jobs", data=form)


async def _transcript(client: Any, job_id: int, kind: str) -> str:
    response = await client.get(f"/api/jobs/{job_id}/transcript.{kind}")
    assert response.status == 200, await response.text()
    return str(await response.text())


async def _rename(client: Any, job_id: int, body: Any) -> Any:
    return await client.patch(f"/api/jobs/{job_id}/speakers", json=body)


@pytest.mark.slow
async def test_a_job_finds_speakers_and_a_rename_reaches_every_export(aiohttp_client, make_config, dialog):
    client = await aiohttp_client(create_app(make_config(pipeline_command=())))
    response = await upload(client, dialog.audio, speakers="auto")
    assert response.status == 201, await response.text()
    job_id = (await response.json())["id"]
    job = await wait_status(client, job_id, {"completed", "failed", "cancelled"}, timeout=300)
    assert job["status"] == "completed", job
    assert job["speakers"] == {"asked": "auto", "count": 2, "labels": ["A", "B"], "names": {}}
    assert (await _transcript(client, job_id, "txt")).startswith("A: ")
    logs = (await (await client.get(f"/api/jobs/{job_id}/logs?lines=1000")).json())["lines"]
    assert any("[speakers] 2 speaker(s)" in line for line in logs)
    segments = (await (await client.get(f"/api/jobs/{job_id}/segments")).json())["segments"]
    assert segments[0]["speaker"] == "A"

    renamed = await _rename(client, job_id, {"A": "Maria"})
    assert renamed.status == 200, await renamed.text()
    assert (await renamed.json())["speakers"]["names"] == {"A": "Maria"}
    assert (await _transcript(client, job_id, "txt")).startswith("Maria: ")
    assert "\nB: " in await _transcript(client, job_id, "txt")
    assert "Maria: " in await _transcript(client, job_id, "srt")
    assert "<v Maria>" in await _transcript(client, job_id, "vtt")
    document = json.loads(await _transcript(client, job_id, "json"))
    assert document["segments"][0]["speaker"] == "Maria" and document["speaker_names"] == {"A": "Maria"}

    back = await _rename(client, job_id, {"A": "A"})
    assert (await back.json())["speakers"]["names"] == {}
    assert (await _transcript(client, job_id, "txt")).startswith("A: ")
    unknown = await _rename(client, job_id, {"Z": "Zoe"})
    assert unknown.status == 400 and "no speaker 'Z'" in (await unknown.json())["error"]
    assert (await _rename(client, job_id, ["A"])).status == 400


async def test_speakers_values_are_checked_and_health_says_they_work(aiohttp_client, make_config, tone):
    client = await aiohttp_client(create_app(make_config()))
    body = await health(client)
    assert body["speakers"]["available"] is True
    for bad in ("eleven", "0", "11"):
        response = await upload(client, tone, speakers=bad)
        assert response.status == 400
        assert "off, auto or a number 1-10" in (await response.json())["error"]
    assert (await (await client.get("/api/jobs")).json())["jobs"] == []
    response = await upload(client, tone, speakers="3")
    assert response.status == 201
    job = await response.json()
    assert json.loads(job["pipeline_options"]) == {"speakers": "3"}
    done = await wait_status(client, job["id"], {"completed"})
    assert json.loads((Path(done["output_path"]) / "argv.json").read_text())[-3:-1] == ["--speakers", "3"]
    # The fake pipeline found no speakers: there is nothing to rename.
    assert (await _rename(client, job["id"], {"A": "Maria"})).status == 409


# A server whose Python cannot import torch, as one installed without the extra.
WITHOUT_TORCH = (
    "import runpy, sys; sys.modules['torch'] = None; "
    "runpy.run_module('server', run_name='__main__', alter_sys=True)"
)


class ServerWithoutSpeakers(ServerProcess):
    def argv(self) -> list[str]:
        return [sys.executable, "-c", WITHOUT_TORCH, *super().argv()[3:]]


@pytest.fixture
def bare_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerWithoutSpeakers(tmp_path / "data", args=fake_pipeline_args()).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_server_without_the_extra_refuses_speakers_naming_it(
    bare_server: ServerProcess, tone: Path
) -> None:
    status = bare_server.request("GET", "/api/health").json()["speakers"]
    assert status["available"] is False and "transcriptor[speakers]" in status["reason"]
    refused = bare_server.post_upload(tone.read_bytes(), tone.name, speakers="auto")
    assert refused.status == 400
    assert "pip install 'transcriptor[speakers]'" in refused.json()["error"]
    assert bare_server.upload(tone, speakers="off")["status"] == "queued"


@pytest.fixture
def sdk() -> Iterator[Any]:
    made: list[openai.OpenAI] = []

    def make(client: Any) -> openai.OpenAI:
        api = openai.OpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0, timeout=300.0)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


@pytest.mark.slow
async def test_diarized_json_through_the_sdk_names_known_speakers(aiohttp_client, make_config, sdk, dialog):
    client = await aiohttp_client(create_app(make_config(pipeline_command=())))
    api = sdk(client)

    def create() -> TranscriptionDiarized:
        with dialog.audio.open("rb") as audio:
            return api.audio.transcriptions.create(
                model="whisper-1",
                file=audio,
                response_format="diarized_json",
                known_speaker_names=["Ann", "Bob"],
            )

    result = await asyncio.to_thread(create)
    assert isinstance(result, TranscriptionDiarized) and result.task == "transcribe"
    assert result.duration > 30 and result.text
    assert result.segments[0].speaker == "Ann" and {s.speaker for s in result.segments} == {"Ann", "Bob"}
    assert all(s.type == "transcript.text.segment" and s.end >= s.start for s in result.segments)

    def stream() -> list[Any]:
        with dialog.audio.open("rb") as audio:
            events = api.audio.transcriptions.create(
                model="whisper-1", file=audio, response_format="diarized_json", stream=True
            )
            return list(events)

    events = await asyncio.to_thread(stream)
    segments = [e for e in events if e.type == "transcript.text.segment"]
    assert events[-1].type == "transcript.text.done" and len(segments) == len(events) - 1
    assert segments[0].speaker == "A" and {e.speaker for e in segments} == {"A", "B"}
    assert events[-1].text == " ".join(e.text for e in segments)
