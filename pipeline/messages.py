"""What the leader and its workers say to each other over their pipe, one class a message.

Each message is a small frozen dataclass, pickled by multiprocessing's Connection. The
leader sends `Task`s (a piece of audio, new settings, or `NoMoreWork`); a worker sends
`Event`s back, each naming the worker it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from pipeline.settings import Settings


# -- leader -> worker ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transcribe:
    """Transcribe these samples; their times are `offset` seconds into the file.

    `speech` is VAD's segments in them (sample offsets), found by the leader, or None to
    decode without VAD."""

    index: int  # the window's number, echoed back in the events about it
    offset: float
    samples: np.ndarray
    speech: list[dict[str, int]] | None


@dataclass(frozen=True, slots=True)
class UseSettings:
    """Decode with these options from now on (a warm worker takes its job's so)."""

    settings: Settings


@dataclass(frozen=True, slots=True)
class NoMoreWork:
    """Every window is handed out: report the peak memory and leave."""


@dataclass(frozen=True, slots=True)
class DecodeUtterance:
    """Decode one live utterance whole, in a short window (pipeline/live_decode.py)."""

    samples: np.ndarray  # 16 kHz float32
    language: str | None
    beam_size: int = 1
    prompt: str | None = None


Task = Transcribe | UseSettings | NoMoreWork | DecodeUtterance


# -- worker -> leader ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Loaded:
    worker: int
    seconds: float  # imports and model load, as the worker counted them


@dataclass(frozen=True, slots=True)
class SegmentFound:
    worker: int
    index: int
    segment: dict[str, Any]  # transcript.Segment.to_dict()'s form, absolute times


@dataclass(frozen=True, slots=True)
class WindowDone:
    worker: int
    index: int
    seconds: float
    language: str | None


@dataclass(frozen=True, slots=True)
class WorkerWarning:
    """A warning the worker's libraries logged; the leader prints it."""

    worker: int
    text: str


@dataclass(frozen=True, slots=True)
class Failed:
    worker: int
    error: str


@dataclass(frozen=True, slots=True)
class Exited:
    worker: int
    peak_rss_bytes: int


@dataclass(frozen=True, slots=True)
class UtteranceText:
    """The text of a DecodeUtterance."""

    worker: int
    text: str
    seconds: float


Event = Loaded | SegmentFound | WindowDone | WorkerWarning | Failed | Exited | UtteranceText
