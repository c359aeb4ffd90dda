"""The transcript files: txt, srt, vtt and json, each written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.transcript import Segment

FORMATS = ("txt", "srt", "vtt", "json")
SPEAKERS_FILE = "speakers.json"  # what the speaker stage found: asked, count, labels


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


Names = dict[str, str]  # speaker label -> the name a person gave it


def to_txt(segments: Sequence[Segment], names: Names | None = None) -> str:
    """One line per segment; with speakers, one `A: text` line per turn."""
    names = names or {}
    if not any(s.speaker for s in segments):
        return "".join(f"{s.text.strip()}\n" for s in segments)
    turns: list[tuple[str | None, list[str]]] = []
    for s in segments:
        who = s.spoken_by(names)
        if turns and turns[-1][0] == who:
            turns[-1][1].append(s.text.strip())
        else:
            turns.append((who, [s.text.strip()]))
    return "".join(f"{who}: {' '.join(texts)}\n" if who else f"{' '.join(texts)}\n" for who, texts in turns)


def _srt_text(segment: Segment, names: Names) -> str:
    who = segment.spoken_by(names)
    return f"{who}: {segment.text.strip()}" if who else segment.text.strip()


def _vtt_text(segment: Segment, names: Names) -> str:
    who = segment.spoken_by(names)
    # A voice span's annotation ends at ">", so a name cannot hold one.
    return f"<v {who.replace('>', '')}>{segment.text.strip()}" if who else segment.text.strip()


def to_srt(segments: Sequence[Segment], names: Names | None = None) -> str:
    blocks = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{_srt_text(s, names or {})}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Segment], names: Names | None = None) -> str:
    blocks = [
        f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{_vtt_text(s, names or {})}\n" for s in segments
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_json(segments: Sequence[Segment], meta: dict[str, Any], names: Names | None = None) -> str:
    document = dict(meta)
    document["text"] = " ".join(s.text.strip() for s in segments)
    rows = [s.to_dict() for s in segments]
    if names:
        document["speaker_names"] = dict(names)
        for row in rows:
            if row.get("speaker"):
                row["speaker"] = names.get(row["speaker"], row["speaker"])
                for word in row["words"]:
                    word["speaker"] = names.get(word.get("speaker", ""), word.get("speaker"))
    document["segments"] = rows
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def render(kind: str, segments: Sequence[Segment], meta: dict[str, Any], names: Names | None = None) -> str:
    """One transcript format as text; `names` renames speakers."""
    if kind == "json":
        return to_json(segments, meta, names)
    return {"txt": to_txt, "srt": to_srt, "vtt": to_vtt}[kind](segments, names)


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
    written = []
    for name in formats:
        path = out_dir / f"transcript.{name}"
        write_atomic(path, render(name, segments, meta))
        written.append(path)
    return written


def write_partial(out_dir: Path, segments: Sequence[Segment], meta: dict[str, Any]) -> Path:
    path = out_dir / "transcript.partial.json"
    write_atomic(path, to_json(segments, {**meta, "partial": True}))
    return path
