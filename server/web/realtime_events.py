"""OpenAI Realtime transcription events: the client's checked, the pipeline's translated.

The live pipeline prints `[live] {"event": ...}` lines in its own small vocabulary
(pipeline/live.py); this module alone knows OpenAI's names and shapes for them, and what
a client may send. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

LIVE_PREFIX = "[live] "
RATE = 24000
# One append event's text: 1 MiB of base64 is about 16 s of 24 kHz pcm16, far more than
# any client sends at once (the SDK's examples send 20-100 ms).
MAX_EVENT_CHARS = 1 << 20
# OpenAI's transcription model names; each means this server's default model.
OPENAI_MODELS = frozenset(
    {
        "whisper-1",
        "gpt-transcribe",
        "gpt-live-transcribe",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "gpt-4o-mini-transcribe-2025-12-15",
        "gpt-realtime-whisper",
    }
)


class ClientError(Exception):
    """A client event refused: becomes an `error` event; the session goes on."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


@dataclass
class SessionConfig:
    """What session.update may change; `turn_detection` None means manual commits."""

    model: str
    language: str | None = None
    prompt: str | None = None
    turn_detection: dict[str, Any] | None = field(
        default_factory=lambda: {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
        }
    )

    def session(self, session_id: str, job_id: int) -> dict[str, Any]:
        """The session object of session.created/updated (a transcription session)."""
        return {
            "type": "transcription",
            "id": session_id,
            "object": "realtime.transcription_session",
            "job_id": job_id,  # ours: the page links to the session's job
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "transcription": {
                        "model": self.model,
                        "language": self.language,
                        "prompt": self.prompt,
                    },
                    "turn_detection": self.turn_detection,
                    "noise_reduction": None,
                }
            },
            "include": [],
        }

    def for_pipeline(self) -> dict[str, Any]:
        return {"language": self.language, "prompt": self.prompt, "turn_detection": self.turn_detection}


def parse_client_event(text: str) -> dict[str, Any]:
    if len(text) > MAX_EVENT_CHARS:
        raise ClientError("frame_too_large", f"an event may be at most {MAX_EVENT_CHARS} characters")
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        raise ClientError("invalid_json", "the event is not valid JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise ClientError("invalid_event", "an event is a JSON object with a string `type`", "type")
    return event


def decode_audio(event: dict[str, Any]) -> bytes:
    """The pcm16 bytes of an input_audio_buffer.append, checked."""
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise ClientError("invalid_value", "`audio` must be a base64 string of pcm16 audio", "audio")
    try:
        pcm = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError("invalid_base64", "`audio` is not valid base64", "audio") from None
    if len(pcm) % 2:
        raise ClientError(
            "invalid_audio", f"pcm16 audio has an even byte count; got {len(pcm)} bytes", "audio"
        )
    return pcm


def _dig(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def apply_update(config: SessionConfig, event: dict[str, Any], models: set[str]) -> SessionConfig:
    """The configuration after a session.update; refused whole if any part is wrong."""
    session = event.get("session")
    if not isinstance(session, dict):
        raise ClientError("invalid_value", "`session` must be an object", "session")
    if session.get("type", "transcription") != "transcription":
        raise ClientError(
            "invalid_value",
            "this socket holds one transcription session; its type cannot change",
            "session.type",
        )
    new = SessionConfig(config.model, config.language, config.prompt, config.turn_detection)
    audio_input = _dig(session, "audio", "input") or {}
    fmt = _dig(audio_input, "format")
    if fmt is not None:
        if fmt.get("type", "audio/pcm") != "audio/pcm":
            raise ClientError(
                "invalid_value", "only audio/pcm (pcm16) is supported", "session.audio.input.format.type"
            )
        if fmt.get("rate", RATE) != RATE:
            raise ClientError(
                "unsupported_rate",
                f"only {RATE} Hz pcm16 is supported, not {fmt.get('rate')!r}",
                "session.audio.input.format.rate",
            )
    transcription = audio_input.get("transcription")
    if isinstance(transcription, dict):
        model = transcription.get("model")
        if model not in (None, config.model) and model not in OPENAI_MODELS:
            known = ", ".join(sorted(models | {"whisper-1"}))
            raise ClientError(
                "invalid_value",
                f"a session keeps the model it started with ({config.model}); one of: {known}",
                "session.audio.input.transcription.model",
            )
        if model is not None:
            new.model = str(model)
        if "language" in transcription:
            new.language = transcription["language"] or None
        if "prompt" in transcription:
            new.prompt = transcription["prompt"] or None
    if "turn_detection" in audio_input:
        turns = audio_input["turn_detection"]
        kinds = ("server_vad", "semantic_vad")
        if turns is not None and (not isinstance(turns, dict) or turns.get("type") not in kinds):
            raise ClientError(
                "invalid_value",
                "turn_detection is null, server_vad or semantic_vad",
                "session.audio.input.turn_detection",
            )
        new.turn_detection = turns  # semantic_vad is served by the same gate as server_vad
    return new


@dataclass
class Translator:
    """Turns the pipeline's events into OpenAI's, numbering events and naming items."""

    job_id: int
    events: int = 0
    last_committed: str | None = None

    def event_id(self) -> str:
        self.events += 1
        return f"event_{self.job_id}_{self.events}"

    def item_id(self, number: int) -> str:
        return f"item_{self.job_id}_{number}"

    def error(
        self, code: str, message: str, param: str | None = None, kind: str = "invalid_request_error"
    ) -> dict[str, Any]:
        return {
            "type": "error",
            "event_id": self.event_id(),
            "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": None},
        }

    def server_event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": self.event_id(), **fields}

    def from_pipeline(self, line: str) -> dict[str, Any] | None:
        """The OpenAI event for one `[live]` line of the pipeline, or None."""
        if not line.startswith(LIVE_PREFIX):
            return None
        try:
            event = json.loads(line[len(LIVE_PREFIX) :])
        except ValueError:
            return None
        kind = event.get("event")
        item = self.item_id(int(event.get("item", 0)))
        if kind == "speech_started":
            return self.server_event(
                "input_audio_buffer.speech_started", audio_start_ms=event["audio_start_ms"], item_id=item
            )
        if kind == "speech_stopped":
            return self.server_event(
                "input_audio_buffer.speech_stopped", audio_end_ms=event["audio_end_ms"], item_id=item
            )
        if kind == "committed":
            previous, self.last_committed = self.last_committed, item
            return self.server_event("input_audio_buffer.committed", item_id=item, previous_item_id=previous)
        if kind == "cleared":
            return self.server_event("input_audio_buffer.cleared")
        if kind == "delta":
            return self.server_event(
                "conversation.item.input_audio_transcription.delta",
                item_id=item,
                content_index=0,
                delta=event["delta"],
            )
        if kind == "completed":
            return self.server_event(
                "conversation.item.input_audio_transcription.completed",
                item_id=item,
                content_index=0,
                transcript=event["transcript"],
                usage={"type": "duration", "seconds": event["seconds"]},
            )
        if kind == "error":
            return self.error(event.get("code", "error"), event.get("message", ""))
        return None
