"""transcript.partial.json as a resume point: written as windows finish, read by --resume.

The partial transcript holds the segments printed so far, in order, and
`"resume": {"at": SECONDS, "segments": N}`: its N segments are everything the windows
before SECONDS gave (windows are cut in pauses, so no segment crosses that point), and
the leader prints a window's segments only once it and every earlier one are done. A
resumed run keeps them and starts at SECONDS, so each segment is kept exactly once.

It is rewritten at most every few seconds while a run works (atomically, so a run killed
with SIGKILL leaves the last whole one), and once more when a run is stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.formats import write_partial
from pipeline.transcript import Segment

PARTIAL_NAME = "transcript.partial.json"
# Checkpoints while working: at most one per this many seconds.
CHECKPOINT_SECONDS = 3.0
# A partial transcript of another file (by its duration) is not resumed.
_SAME_DURATION = 0.05


@dataclass(frozen=True, slots=True)
class ResumePoint:
    at: float  # seconds into the file where the next run starts
    segments: list[Segment]  # everything before `at`, in order


def read_resume_point(out_dir: Path, duration: float) -> tuple[ResumePoint | None, str]:
    """The resume point in out_dir, or None, and a line saying what was found."""
    path = out_dir / PARTIAL_NAME
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        resume = document["resume"]
        at, count = float(resume["at"]), int(resume["segments"])
        segments = [Segment.from_dict(data) for data in document["segments"][:count]]
        recorded = float(document["duration"])
    except FileNotFoundError:
        return None, f"resume: no {PARTIAL_NAME} in {out_dir}; starting from the beginning"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return None, f"resume: {path} is unusable ({error!r}); starting from the beginning"
    if abs(recorded - duration) > _SAME_DURATION or len(segments) < count or at < 0:
        return None, f"resume: {path} is not this input's; starting from the beginning"
    return ResumePoint(at, segments), f"resumed at {at:.2f} s: kept {count} segment(s) from {path}"


class Checkpoints:
    """Writes the partial transcript now and then while a run works."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.written_at = time.monotonic()
        self.written: tuple[float, int] | None = None

    def due(self, at: float, count: int) -> bool:
        """A checkpoint is due once the first segments are final, then every few seconds."""
        if self.written == (at, count):
            return False
        first = self.written is None and count > 0
        return first or time.monotonic() - self.written_at >= CHECKPOINT_SECONDS

    def write(self, segments: list[Segment], at: float, meta: dict[str, Any]) -> Path:
        """`segments` are everything the audio before `at` seconds gave, in order."""
        resume = {"at": at, "segments": len(segments)}
        path = write_partial(self.out_dir, segments, {**meta, "resume": resume})
        self.written_at, self.written = time.monotonic(), (at, len(segments))
        return path

    def remove(self) -> None:
        """The run is complete: the transcript files say it all."""
        (self.out_dir / PARTIAL_NAME).unlink(missing_ok=True)
