"""The transcript files: txt, srt, vtt and json, each written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.transcript import Segment

FORMATS = ("txt", "srt", "vtt", "json")


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_txt(segments: Sequence[Segment]) -> str:
    return "".join(f"{s.text.strip()}\n" for s in segments)


def to_srt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n" for s in segments
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_json(segments: Sequence[Segment], meta: dict[str, Any]) -> str:
    document = dict(meta)
    document["text"] = " ".join(s.text.strip() for s in segments)
    document["segments"] = [s.to_dict() for s in segments]
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_transcript(
    out_dir: Path, segments: Sequence[Segment], meta: dict[str, Any], formats: Sequence[str]
) -> list[Path]:
    """Write transcript.<format> for each format; return the paths written."""
    renderers: dict[str, Callable[[], str]] = {
        "txt": lambda: to_txt(segments),
        "srt": lambda: to_srt(segments),
        "vtt": lambda: to_vtt(segments),
        "json": lambda: to_json(segments, meta),
    }
    written = []
    for name in formats:
        path = out_dir / f"transcript.{name}"
        write_atomic(path, renderers[name]())
        written.append(path)
    return written


def write_partial(out_dir: Path, segments: Sequence[Segment], meta: dict[str, Any]) -> Path:
    path = out_dir / "transcript.partial.json"
    write_atomic(path, to_json(segments, {**meta, "partial": True}))
    return path
