"""Decode one window in a worker, with faster-whisper, as its own transcribe call would.

The leader has already run Silero VAD on the window (windows.py cuts at its pauses), so
faster-whisper's `get_speech_timestamps` is replaced, in the worker only, by one that
returns the segments the window came with: the window is then decoded exactly as
`transcribe(window, vad_filter=True)` decodes it (grouping into 30-second pieces,
features, batches, timestamps restored around the silences), without scanning it twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from pipeline.messages import Transcribe
from pipeline.settings import Settings

# The segments of the window the calling thread is decoding.
_given = threading.local()


def _given_speech(audio: Any, vad_options: Any = None, *_: Any, **__: Any) -> list[dict[str, int]]:
    speech: list[dict[str, int]] | None = getattr(_given, "speech", None)
    if speech is None:
        raise RuntimeError("VAD asked for outside a window; the leader finds the speech")
    return [dict(segment) for segment in speech]  # faster-whisper edits them in place


def use_given_speech() -> None:
    """Make faster-whisper take each window's speech from the leader (once per worker)."""
    import faster_whisper.transcribe

    faster_whisper.transcribe.get_speech_timestamps = _given_speech


class Decoder:
    """One replica's decoding: a thread holds one Decoder and decodes a window at a time."""

    def __init__(self, model: Any, settings: Settings) -> None:
        from faster_whisper import BatchedInferencePipeline

        self.model = model
        self.settings = settings
        self.batched = BatchedInferencePipeline(model)
        self.language: str | None = settings.language_code

    def segments(self, task: Transcribe) -> tuple[Iterator[dict[str, Any]], str | None]:
        """The window's segments (absolute times) as they are decoded, and its language."""
        settings = self.settings
        options: dict[str, Any] = {
            "language": self.language,
            "beam_size": settings.beam_size,
            # About 9% of decode time; only word outputs need them.
            "word_timestamps": bool(settings.word_timestamps),
            "initial_prompt": settings.initial_prompt,
        }
        if settings.temperature is not None:
            options["temperature"] = settings.temperature
        vad = task.speech is not None
        # Both transcribe calls run VAD (and so _given_speech) before they return.
        _given.speech = task.speech
        try:
            if settings.batched and vad:
                found, info = self.batched.transcribe(
                    task.samples, batch_size=settings.batch_size, vad_filter=True, **options
                )
            else:
                found, info = self.model.transcribe(task.samples, vad_filter=vad, **options)
        finally:
            _given.speech = None
        if self.language is None:
            self.language = info.language  # the first window's, for the rest of the file
        return (segment_dict(segment, task.offset) for segment in found), info.language


def segment_dict(segment: Any, offset: float) -> dict[str, Any]:
    """A faster-whisper segment as transcript.Segment.from_dict reads it, `offset` added."""
    words = [
        {"start": offset + w.start, "end": offset + w.end, "word": w.word, "probability": w.probability}
        for w in segment.words or ()
    ]
    return {
        "start": offset + segment.start,
        "end": offset + segment.end,
        "text": segment.text.strip(),
        "words": words,
        "seek": segment.seek,
        "tokens": list(segment.tokens),
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }
