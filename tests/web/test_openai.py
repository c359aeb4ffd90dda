"""The OpenAI-compatible API, driven by the official `openai` SDK against a real server.

The SDK blocks, so each call runs in a thread while the app serves on the test loop.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from server import keys
from server.app import create_app
from server.jobs.state import REASON_CLIENT_DISCONNECTED
from tests.helpers.audio import SPEECH_CLIP
from tests.helpers.procs import alive_in_group


@pytest.fixture
def sdk() -> Iterator[Callable[..., openai.OpenAI]]:
    """Makes SDK clients for a test server; closes them (their sockets) after the test."""
    made: list[openai.OpenAI] = []

    def make(client: Any, api_key: str = "anything", **options: Any) -> openai.OpenAI:
        options.setdefault("max_retries", 0)
        api = openai.OpenAI(base_url=str(client.make_url("/v1")), api_key=api_key, **options)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


async def jobs(client: Any) -> list[dict[str, Any]]:
    return (await (await client.get("/api/jobs")).json())["jobs"]


async def wait_job(
    client: Any, check: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> dict[str, Any]:
    """The newest job once `check` holds for it."""
    async with asyncio.timeout(timeout):
        while True:
            found = await jobs(client)
            if found and check(found[0]):
                return found[0]
            await asyncio.sleep(0.02)


def argv_of(job: dict[str, Any]) -> list[str]:
    return json.loads((Path(job["output_path"]) / "argv.json").read_text())


async def test_json_answer_and_the_job_it_was(aiohttp_client, sdk, make_config, tone):
    client = await aiohttp_client(create_app(make_config()))
    with tone.open("rb") as audio:
        result = await asyncio.to_thread(
            sdk(client).audio.transcriptions.create,
            model="whisper-1",
            file=audio,
            prompt="Fox, dog.",
            temperature=0.2,
        )
    assert result.text == "segment 1 segment 2 segment 3"
    job = (await jobs(client))[0]
    assert job["status"] == "completed"
    assert job["source"] == "api: openai"
    assert job["on_disconnect"] == "keep"
    assert job["model"] == "tiny.en"  # whisper-1 names the default model
    argv = argv_of(job)
    assert argv[argv.index("--initial-prompt") + 1] == "Fox, dog."
    assert argv[argv.index("--temperature") + 1] == "0.2"
    assert "--no-word-timestamps" in argv  # not asked for, so not computed
    assert "--batch-size" not in argv
    page = await (await client.get(f"/jobs/{job['id']}")).text()
    assert "An API request (api: openai) started this job" in page


@pytest.mark.parametrize(
    ("fmt", "content_type", "expected"),
    [
        ("text", "text/plain", "segment 1 segment 2 segment 3\n"),
        ("srt", "application/x-subrip", "1\n00:00:00,000 --> 00:00:01,000\n"),
        ("vtt", "text/vtt", "WEBVTT\n"),
    ],
)
async def test_text_formats(aiohttp_client, sdk, make_config, tone, fmt, content_type, expected):
    client = await aiohttp_client(create_app(make_config()))
    with tone.open("rb") as audio:
        raw = await asyncio.to_thread(
            sdk(client).audio.transcriptions.with_raw_response.create,
            model="whisper-1",
            file=audio,
            response_format=fmt,
        )
    assert raw.headers["content-type"].startswith(content_type)
    assert raw.parse().startswith(expected)


async def test_verbose_json_with_words(aiohttp_client, sdk, make_config, tone):
    client = await aiohttp_client(create_app(make_config()))
    with tone.open("rb") as audio:
        result = await asyncio.to_thread(
            sdk(client).audio.transcriptions.create,
            model="tiny.en",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["segment", "word"],
        )
    assert result.language == "en"
    assert result.duration == 3.0
    assert result.text == "segment 1 segment 2 segment 3"
    assert [s.text for s in result.segments] == ["segment 1", "segment 2", "segment 3"]
    first = result.segments[0]
    assert (first.id, first.start, first.end) == (0, 0.0, 1.0)
    for name in ("seek", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob"):
        assert hasattr(first, name)
    assert [w.word for w in result.words][:2] == ["segment", "1"]
    assert "--word-timestamps" in argv_of((await jobs(client))[0])


async def test_streaming_relays_segments_then_the_whole_text(aiohttp_client, sdk, make_config, tone):
    client = await aiohttp_client(create_app(make_config()))

    def run() -> list[Any]:
        with tone.open("rb") as audio:
            stream = sdk(client).audio.transcriptions.create(model="whisper-1", file=audio, stream=True)
            return list(stream)

    events = await asyncio.to_thread(run)
    assert [e.type for e in events] == ["transcript.text.delta"] * 3 + ["transcript.text.done"]
    assert "".join(e.delta for e in events[:3]) == events[-1].text == "segment 1 segment 2 segment 3"
    argv = argv_of((await jobs(client))[0])
    assert argv[argv.index("--batch-size") + 1] == "1"  # each window's segments at once


async def test_models_list_and_lookup(aiohttp_client, sdk, make_config):
    client = await aiohttp_client(create_app(make_config()))
    api = sdk(client)
    listed = await asyncio.to_thread(api.models.list)
    ids = [model.id for model in listed.data]
    assert ids[:2] == ["whisper-1", "tiny.en"]
    assert all(model.object == "model" and model.owned_by for model in listed.data)
    assert (await asyncio.to_thread(api.models.retrieve, "tiny.en")).id == "tiny.en"
    with pytest.raises(openai.NotFoundError, match="no-such-model"):
        await asyncio.to_thread(api.models.retrieve, "no-such-model")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "whisper-9"}, "not available here"),
        ({"model": "whisper-1", "known_speaker_names": ["Ann"]}, "diarized_json"),
        ({"model": "whisper-1", "include": ["logprobs"]}, "logprobs"),
        ({"model": "whisper-1", "temperature": 3}, "between 0 and 1"),
        ({"model": "whisper-1", "timestamp_granularities": ["word"]}, "verbose_json"),
        ({"model": "whisper-1", "language": "not a language"}, "language"),
    ],
)
async def test_bad_requests_are_clear_400s(aiohttp_client, sdk, make_config, tone, options, message):
    client = await aiohttp_client(create_app(make_config()))
    with tone.open("rb") as audio, pytest.raises(openai.BadRequestError, match=message) as error:
        await asyncio.to_thread(sdk(client).audio.transcriptions.create, file=audio, **options)
    assert error.value.status_code == 400
    assert error.value.body["message"]  # type: ignore[index]
    assert await jobs(client) == []  # refused before any job was made
    assert list((make_config().uploads_dir).iterdir()) == []


async def test_translation_is_refused(aiohttp_client, sdk, make_config, tone):
    client = await aiohttp_client(create_app(make_config()))

    def translate() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the SDK deprecates translations
            with tone.open("rb") as audio:
                sdk(client).audio.translations.create(model="whisper-1", file=audio)

    with pytest.raises(openai.BadRequestError, match="translation"):
        await asyncio.to_thread(translate)


async def test_token_is_the_api_key(aiohttp_client, sdk, make_config, tone):
    client = await aiohttp_client(create_app(make_config(token="s3cret")))
    with pytest.raises(openai.AuthenticationError, match="access token"):
        await asyncio.to_thread(sdk(client, api_key="wrong").models.list)
    with tone.open("rb") as audio:
        result = await asyncio.to_thread(
            sdk(client, api_key="s3cret").audio.transcriptions.create, model="whisper-1", file=audio
        )
    assert result.text.startswith("segment 1")


async def assert_killed_by_disconnect(client: Any, job_id: int) -> None:
    async with asyncio.timeout(2.5):  # the kill grace is 1 s; no disconnect grace applies
        while (job := await (await client.get(f"/api/jobs/{job_id}")).json())["status"] != "cancelled":
            await asyncio.sleep(0.02)
    assert job["cancel_reason"] == REASON_CLIENT_DISCONNECTED
    if job["process_group_id"]:
        assert alive_in_group(job["process_group_id"]) == []


async def test_closing_a_stream_cancels_the_job(aiohttp_client, sdk, make_config, tone):
    # A segment every 50 ms for 10 s: the job is still running when the client leaves.
    client = await aiohttp_client(
        create_app(make_config("--lines", "200", "--segments", "200", "--interval", "0.05"))
    )

    def read_one_then_close() -> str:
        with tone.open("rb") as audio:
            stream = sdk(client).audio.transcriptions.create(model="whisper-1", file=audio, stream=True)
            first = next(iter(stream))
            stream.close()
            return first.delta  # type: ignore[union-attr]

    assert await asyncio.to_thread(read_one_then_close) == "segment 1"
    job = (await jobs(client))[0]
    await assert_killed_by_disconnect(client, job["id"])


async def test_client_timeout_cancels_a_running_job(aiohttp_client, sdk, make_config, tone, tmp_path):
    client = await aiohttp_client(create_app(make_config("--gate", str(tmp_path / "never"))))

    def call() -> None:
        with tone.open("rb") as audio:
            sdk(client, timeout=3.0).audio.transcriptions.create(model="whisper-1", file=audio)

    call_done = asyncio.ensure_future(asyncio.to_thread(call))
    job = await wait_job(client, lambda j: j["status"] == "running")
    with pytest.raises(openai.APITimeoutError):
        await call_done
    await assert_killed_by_disconnect(client, job["id"])


async def test_a_queued_request_waits_and_its_timeout_cancels_it(
    aiohttp_client, sdk, make_config, tone, tmp_path
):
    gate = tmp_path / "gate"
    config = make_config("--gate", str(gate), max_concurrent_jobs=1)
    client = await aiohttp_client(create_app(config))

    def call(timeout: float) -> str:
        with tone.open("rb") as audio:
            return (
                sdk(client, timeout=timeout).audio.transcriptions.create(model="whisper-1", file=audio).text
            )

    first = asyncio.ensure_future(asyncio.to_thread(call, 60.0))
    running = await wait_job(client, lambda j: j["status"] == "running")
    second = asyncio.ensure_future(asyncio.to_thread(call, 2.0))
    queued = await wait_job(client, lambda j: j["id"] != running["id"] and j["status"] == "queued")
    assert queued["queue_position"] == 1
    with pytest.raises(openai.APITimeoutError):
        await second
    await assert_killed_by_disconnect(client, queued["id"])
    gate.touch()
    assert (await first).startswith("segment 1")


async def test_a_browser_leaving_does_not_end_an_api_job(aiohttp_client, sdk, make_config, tone, tmp_path):
    gate = tmp_path / "gate"
    app = create_app(make_config("--gate", str(gate)))
    client = await aiohttp_client(app)

    def call() -> str:
        with tone.open("rb") as audio:
            return sdk(client, timeout=60.0).audio.transcriptions.create(model="whisper-1", file=audio).text

    answer = asyncio.ensure_future(asyncio.to_thread(call))
    job = await wait_job(client, lambda j: j["status"] == "running")
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "job": job["id"]})
        await ws.receive_json()
    runner = app[keys.RUNNER]
    # The page's leaving starts the runner's disconnect check; wait until it has decided.
    async with asyncio.timeout(10):
        while runner.stats().disconnect_timers or app[keys.CHANNELS].subscriber_count(job["id"]) != 1:
            await asyncio.sleep(0.02)
    assert (await (await client.get(f"/api/jobs/{job['id']}")).json())["status"] == "running"
    gate.touch()
    assert (await answer).startswith("segment 1")


@pytest.mark.slow
async def test_real_pipeline_on_speech(aiohttp_client, sdk, make_config):
    client = await aiohttp_client(create_app(make_config(pipeline_command=())))
    with SPEECH_CLIP.open("rb") as audio:
        result = await asyncio.to_thread(
            sdk(client, timeout=300.0).audio.transcriptions.create,
            model="whisper-1",
            file=audio,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert "quick brown fox" in result.text.lower()
    assert result.language == "en" and result.duration > 5
    assert result.segments[0].tokens and result.segments[0].avg_logprob < 0
    assert any(w.word.lower().strip(",.") == "fox" for w in result.words)


@pytest.mark.slow
async def test_real_pipeline_streams_with_the_sdk(aiohttp_client, sdk, make_config):
    client = await aiohttp_client(create_app(make_config(pipeline_command=())))

    def run() -> list[Any]:
        with SPEECH_CLIP.open("rb") as audio:
            stream = sdk(client, timeout=300.0).audio.transcriptions.create(
                model="whisper-1", file=audio, stream=True
            )
            return list(stream)

    events = await asyncio.to_thread(run)
    assert events[-1].type == "transcript.text.done"
    assert "quick brown fox" in events[-1].text.lower()
    assert "".join(e.delta for e in events[:-1]) == events[-1].text


async def test_a_failed_job_is_a_500_with_its_error(aiohttp_client, sdk, make_config, tone):
    client = await aiohttp_client(
        create_app(make_config("--fail-message", "model exploded", "--exit-code", "1"))
    )
    # The SDK's default retries: a failed job is not run again (each retry would be a job).
    api = sdk(client, max_retries=2)
    with tone.open("rb") as audio, pytest.raises(openai.InternalServerError, match="model exploded"):
        await asyncio.to_thread(api.audio.transcriptions.create, model="whisper-1", file=audio)
    assert [j["status"] for j in await jobs(client)] == ["failed"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"these are meeting notes, not audio\n" * 20, "not an audio file"), (b"", "file is empty")],
)
async def test_a_file_that_cannot_be_decoded_is_a_400(
    aiohttp_client, sdk, make_config, tmp_path, content, message
):
    """OpenAI answers 400 invalid_request_error, so clients catch BadRequestError (not 422)."""
    client = await aiohttp_client(create_app(make_config()))
    bad = tmp_path / "talk.mp3"
    bad.write_bytes(content)
    api = sdk(client, max_retries=2)
    with bad.open("rb") as audio, pytest.raises(openai.BadRequestError, match=message) as error:
        await asyncio.to_thread(api.audio.transcriptions.create, model="whisper-1", file=audio)
    assert error.value.status_code == 400
    assert error.value.body == {  # type: ignore[comparison-overlap]
        "message": error.value.body["message"],  # type: ignore[index]
        "type": "invalid_request_error",
        "param": "file",
        "code": None,
    }
    assert await jobs(client) == [] and list(make_config().uploads_dir.iterdir()) == []
    # Our own API keeps its 422 for the same file.
    form = aiohttp.FormData()
    form.add_field("file", content, filename="talk.mp3")
    assert (await client.post("/api/jobs", data=form)).status == 422


async def test_a_full_disk_is_openais_503(aiohttp_client, sdk, make_config, tone):
    client = await aiohttp_client(create_app(make_config(disk_reserve_mb=2**40)))
    with tone.open("rb") as audio, pytest.raises(openai.InternalServerError, match="disk space") as error:
        await asyncio.to_thread(sdk(client).audio.transcriptions.create, model="whisper-1", file=audio)
    assert error.value.status_code == 503  # OpenAI's "try again later"; /api/jobs says 507
    assert error.value.body["type"] == "server_error"  # type: ignore[index]


async def test_a_too_large_file_is_413_as_openai_answers(aiohttp_client, sdk, make_config, tone):
    client = await aiohttp_client(create_app(make_config(max_upload_mb=0.01)))  # 10 KiB
    with tone.open("rb") as audio, pytest.raises(openai.APIStatusError, match="limit") as error:
        await asyncio.to_thread(sdk(client).audio.transcriptions.create, model="whisper-1", file=audio)
    assert error.value.status_code == 413
    assert error.value.body["type"] == "invalid_request_error"  # type: ignore[index]


async def test_a_stopped_job_is_a_409_the_sdk_does_not_retry(
    aiohttp_client, sdk, make_config, tone, tmp_path
):
    client = await aiohttp_client(create_app(make_config("--gate", str(tmp_path / "never"))))
    api = sdk(client, max_retries=2, timeout=60.0)  # the SDK's default retries, which cover 409

    def call() -> None:
        with tone.open("rb") as audio:
            api.audio.transcriptions.create(model="whisper-1", file=audio)

    answer = asyncio.ensure_future(asyncio.to_thread(call))
    job = await wait_job(client, lambda j: j["status"] == "running")
    assert (await client.post(f"/api/jobs/{job['id']}/stop")).status == 200
    with pytest.raises(openai.ConflictError, match="stopped by user"):
        await answer
    assert [j["status"] for j in await jobs(client)] == ["cancelled"]  # one job, not three
