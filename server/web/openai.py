"""OpenAI's audio API on top of jobs: /v1/audio/transcriptions and /v1/models.

Every transcription request is a job like any upload (listed, followed, stoppable on
the pages), marked `api: openai`. The request's connection decides the job's life: the
job is created with on_disconnect=keep, so a browser tab that followed it and closes does
not end it, and a client that hangs up before its answer is complete cancels it at once
(`client disconnected`), queued or running.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from pipeline.models import local_models
from server import keys
from server.jobs.state import REASON_CLIENT_DISCONNECTED, REASON_SHUTDOWN, JobStatus
from server.web.api import job_options, submit_job
from server.web.errors import ApiError, openai_error
from server.web.openai_diarized import diarized, known_names
from server.web.openai_diarized import stream as diarized_stream
from server.web.openai_follow import JobFollower, connection_lost, read_transcript
from server.web.speakers import speakers_option
from server.web.uploads import Upload, UploadReceiver

SOURCE = "api: openai"
ALIAS = "whisper-1"
OWNER = "transcriptor"
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
TEXT_TYPES = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}
GRANULARITIES = ("segment", "word")


@dataclass(frozen=True)
class TranscriptionRequest:
    model: str
    response_format: str
    stream: bool
    words: bool
    options: dict[str, Any]  # extra pipeline options (see runner.option_flags)
    known: tuple[str, ...] = ()  # known_speaker_names[], for diarized_json


def _flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("", "false", "0", "no"):
        return False
    if value in ("true", "1", "yes"):
        return True
    raise ApiError(400, f"{name} must be true or false, not {raw[:20]!r}", param=name)


async def _models(config_default: str) -> dict[str, str]:
    """Model id -> folder of what loads without a download; `whisper-1` names the default."""
    return await asyncio.to_thread(_models_now, config_default)


def _models_now(config_default: str) -> dict[str, str]:
    found = local_models()
    if config_default in found:
        return {ALIAS: found[config_default], **found}
    if Path(config_default).is_dir():  # the default is a model folder
        return {ALIAS: config_default, config_default: config_default, **found}
    return found


def parse_request(upload: Upload, models: dict[str, str], request: web.Request) -> TranscriptionRequest:
    """The form of a transcription request, checked; a refusal names the field."""
    fields, every = upload.fields, upload.all_fields
    config = request.app[keys.CONFIG]
    model = fields.get("model") or ALIAS
    if model not in models:
        known = ", ".join(models) or "none"
        raise ApiError(400, f"model {model[:60]!r} is not available here; use one of: {known}", param="model")
    response_format = fields.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(
            400,
            f"response_format {response_format[:30]!r} is not supported; use one of "
            + ", ".join(RESPONSE_FORMATS),
            param="response_format",
        )
    include = every.get("include[]", []) + every.get("include", [])
    if include:
        raise ApiError(400, f"include {include[0][:30]!r} is not supported (no logprobs)", param="include")
    diarize = response_format == "diarized_json"
    if fields.get("chunking_strategy") or fields.get("known_speaker_references[]"):
        raise ApiError(
            400, "chunking_strategy and speaker references are not supported", param="chunking_strategy"
        )
    speaker_names = known_names(every)
    if speaker_names and not diarize:
        raise ApiError(
            400, "known_speaker_names needs response_format=diarized_json", param="known_speaker_names"
        )
    granularities = every.get("timestamp_granularities[]", []) + every.get("timestamp_granularities", [])
    for value in granularities:
        if value not in GRANULARITIES:
            raise ApiError(
                400,
                f"timestamp_granularities holds {value[:20]!r}; use segment and/or word",
                param="timestamp_granularities",
            )
    words = "word" in granularities
    if granularities and response_format != "verbose_json":
        raise ApiError(
            400,
            "timestamp_granularities needs response_format=verbose_json",
            param="timestamp_granularities",
        )
    stream = _flag(fields.get("stream", ""), "stream")
    if stream and response_format not in ("json", "text", "diarized_json"):
        raise ApiError(
            400,
            "stream=true answers text events; use response_format json, text or diarized_json",
            param="stream",
        )
    options: dict[str, Any] = {"speakers": speakers_option("auto")} if diarize else {}
    if fields.get("temperature"):
        try:
            temperature = float(fields["temperature"])
        except ValueError:
            raise ApiError(400, "temperature must be a number", param="temperature") from None
        if not 0 <= temperature <= 1:
            raise ApiError(400, "temperature must be between 0 and 1", param="temperature")
        options["temperature"] = temperature
    if fields.get("prompt"):
        options["initial_prompt"] = fields["prompt"]
    # One chunk needs no word times for merging: compute them only when asked for.
    one_chunk = config.default_processes == 1 and not config.default_chunk_seconds
    if words or one_chunk:
        options["word_timestamps"] = words or not one_chunk
    if diarize:
        options["word_timestamps"] = True  # a change of speaker splits a segment at a word
    if stream and not diarize:
        # A stream wants each window's segments as soon as they are final: one window per
        # batch costs the same CPU here as eight (pipeline/windows.py, PIPELINE_NOTES.md).
        options["batch_size"] = 1
    return TranscriptionRequest(model, response_format, stream, words, options, speaker_names)


async def transcriptions(request: web.Request) -> web.StreamResponse:
    config = request.app[keys.CONFIG]
    models = await _models(config.default_model)
    upload = await UploadReceiver(config).receive(request)
    asked: TranscriptionRequest | None = None

    async def options() -> dict[str, Any]:
        nonlocal asked
        asked = parse_request(upload, models, request)
        language = upload.fields.get("language") or "auto"
        model = config.default_model if asked.model == ALIAS else asked.model
        chosen = job_options({"model": model, "language": language, "on_disconnect": "keep"}, request)
        pipeline_options = json.dumps(asked.options) if asked.options else None
        return {**chosen, "source": SOURCE, "pipeline_options": pipeline_options}

    # Subscribed before the job is queued, so no segment or status can slip past.
    follower = JobFollower()
    job = await submit_job(request, upload, options, follower=follower)
    assert asked is not None, "options() ran"
    return await _answer(request, job["id"], asked, follower)


async def _answer(
    request: web.Request, job_id: int, asked: TranscriptionRequest, follower: JobFollower
) -> web.StreamResponse:
    """Run the job for as long as the client waits for it, then answer."""
    runner, channels = request.app[keys.RUNNER], request.app[keys.CHANNELS]
    response: web.StreamResponse | None = None
    lost = asyncio.create_task(connection_lost(request), name=f"openai-watch-{job_id}")
    try:
        if asked.stream and asked.response_format == "diarized_json":
            response = await diarized_stream(request, job_id, follower, lost, asked.known)
        elif asked.stream:
            response = await _stream(request, follower, lost)
        else:
            await follower.wait_end(lost)
        if follower.status is None:  # the client went away first
            await runner.cancel(job_id, REASON_CLIENT_DISCONNECTED)
            return response or web.Response(status=499)
        if response is not None:
            return response
        return await _final_answer(request, job_id, asked)
    except (ConnectionError, asyncio.CancelledError):
        # A write to a closed stream, or the handler itself cancelled (server shutdown).
        # Shielded: the kill must finish even though this handler is being torn down.
        await asyncio.shield(runner.cancel(job_id, REASON_CLIENT_DISCONNECTED))
        raise
    finally:
        lost.cancel()
        channels.unsubscribe(job_id, follower)


async def _stream(
    request: web.Request, follower: JobFollower, lost: asyncio.Task[None]
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    texts: list[str] = []
    async for text in follower.segments(lost):
        delta = text if not texts else " " + text
        texts.append(text)
        await response.write(_event({"type": "transcript.text.delta", "delta": delta}))
    if follower.status is None:
        return response
    if follower.status == JobStatus.COMPLETED:
        await response.write(_event({"type": "transcript.text.done", "text": " ".join(texts)}))
    else:
        status, message = await _failure(request, follower.job_id)
        await response.write(_event(openai_error(status, message)))
    await response.write_eof()
    return response


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _failure(request: web.Request, job_id: int) -> tuple[int, str]:
    job = await request.app[keys.STORE].get_job(job_id) or {}
    if job.get("status") == JobStatus.CANCELLED:
        # OpenAI has no answer for "an operator stopped it"; 409 (ConflictError) is the
        # nearest. A shutdown is OpenAI's 503: try again later.
        status = 503 if job.get("cancel_reason") == REASON_SHUTDOWN else 409
        return status, f"job {job_id} was cancelled ({job.get('cancel_reason')})"
    return 500, f"transcription failed (job {job_id}): {job.get('error_message') or 'unknown error'}"


async def _final_answer(request: web.Request, job_id: int, asked: TranscriptionRequest) -> web.Response:
    store = request.app[keys.STORE]
    job = await store.get_job(job_id)
    if job is None or job["status"] != JobStatus.COMPLETED or not job.get("output_path"):
        status, message = await _failure(request, job_id)
        # The SDK retries 409 and 5xx by default, and each retry would be a new job: a
        # job its user stopped, or one that failed, is not run again behind their back.
        headers = {} if status == 503 else {"x-should-retry": "false"}
        return web.json_response(openai_error(status, message), status=status, headers=headers)
    document = await asyncio.to_thread(read_transcript, Path(job["output_path"]))
    segments = document.get("segments", [])
    text = document.get("text") or " ".join(s.get("text", "").strip() for s in segments)
    fmt = asked.response_format
    if fmt == "json":
        return web.json_response({"text": text})
    if fmt == "verbose_json":
        return web.json_response(verbose(document, job, text, words=asked.words))
    if fmt == "diarized_json":
        return web.json_response(diarized(document, job, text, asked.known))
    if fmt == "text":
        body = text + "\n"
    else:
        body = await asyncio.to_thread(read_transcript, Path(job["output_path"]), fmt)
    return web.Response(text=body, content_type=TEXT_TYPES[fmt], charset="utf-8")


def verbose(document: dict[str, Any], job: dict[str, Any], text: str, *, words: bool) -> dict[str, Any]:
    """OpenAI's verbose_json from our transcript.json."""
    segments = document.get("segments", [])
    answer: dict[str, Any] = {
        "task": "transcribe",
        "language": document.get("language") or job.get("language") or "",
        "duration": document.get("duration") or job.get("duration_seconds") or 0.0,
        "text": text,
        "segments": [
            {
                "id": number,
                "seek": s.get("seek", 0),
                "start": s["start"],
                "end": s["end"],
                "text": s.get("text", ""),
                "tokens": s.get("tokens", []),
                "temperature": s.get("temperature", 0.0),
                "avg_logprob": s.get("avg_logprob", 0.0),
                "compression_ratio": s.get("compression_ratio", 0.0),
                "no_speech_prob": s.get("no_speech_prob", 0.0),
            }
            for number, s in enumerate(segments)
        ],
    }
    if words:
        answer["words"] = [
            {"word": w["word"].strip(), "start": w["start"], "end": w["end"]}
            for s in segments
            for w in s.get("words", [])
        ]
    return answer


async def list_models(request: web.Request) -> web.Response:
    models = await _models(request.app[keys.CONFIG].default_model)
    return web.json_response(
        {"object": "list", "data": [_model(name, path) for name, path in models.items()]}
    )


async def get_model(request: web.Request) -> web.Response:
    name = request.match_info["id"]
    models = await _models(request.app[keys.CONFIG].default_model)
    if name not in models:
        raise ApiError(404, f"the model {name[:60]!r} does not exist here", param="model")
    return web.json_response(_model(name, models[name]))


def _model(name: str, folder: str) -> dict[str, Any]:
    try:
        created = int(Path(folder, "model.bin").stat().st_mtime)
    except OSError:
        created = int(time.time())
    return {"id": name, "object": "model", "created": created, "owned_by": OWNER}


async def translations(request: web.Request) -> web.Response:
    raise ApiError(400, "translation is not supported by this server; use /v1/audio/transcriptions")
