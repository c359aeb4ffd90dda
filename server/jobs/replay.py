"""What a job no runner holds any more shows a late subscriber: its log, replayed from the
file with the numbers its lines streamed with, and its segments from its transcript."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.protocol import Segment, parse_line
from server.jobs.channels import Channel, encode
from server.jobs.joblog import CAP_MARKER_PREFIX, LogIndex, read_index
from server.jobs.logtail import tail_lines

FINISHED_REPLAY_LINES = 2000


def _count_lines(path: Path) -> int:
    # Only for a log written before logs had an index: one full read.
    count = 0
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            count += block.count(b"\n")
    return count


def finished_replay(
    job_id: int, log_path: str | None, since: int, room: tuple[int, int] | None = None
) -> list[str]:
    """Encoded messages after `since` for a job that no longer has a live channel, read
    from its log file (blocking: run it in a thread).

    Lines keep the numbers they streamed with. The file holds lines 1..kept; the lines
    past its cap are not held anywhere, so a replay reports them as a `gap` ending at the
    job's last line: a client never misses a line without being told. With `room`
    (messages, size) only the newest that fit are returned, the rest told as a gap.
    """
    if not log_path or not Path(log_path).is_file():
        return []
    path = Path(log_path)
    index = read_index(path)
    if index is None:
        index = LogIndex(lines=(count := _count_lines(path)), kept=count)
    lines = tail_lines(path, FINISHED_REPLAY_LINES + index.capped)
    if index.capped and lines and lines[-1].startswith(CAP_MARKER_PREFIX):
        lines.pop()  # the marker is not a numbered line: the gap below says it
    lines = lines[-FINISHED_REPLAY_LINES:] if lines else []
    first = index.kept - len(lines) + 1
    # The live channel's own numbering and encoding, unbounded: `room` chooses what fits.
    channel = Channel(job_id, seq=first - 1, max_replay_entries=2**62, max_replay_bytes=2**62)
    for line in lines:
        channel.publish_line(line, parse_line(line))
    replay, missed = channel.replay_since(since, room)
    messages: list[str] = []
    if missed:
        gap = {"type": "gap", "job": job_id, "missed": missed, "next_seq": since + missed + 1}
        messages.append(encode(gap))
    messages.extend(replay)
    if since < index.lines and index.capped:
        missed = index.lines - max(index.kept, since)
        messages.append(encode({"type": "gap", "job": job_id, "missed": missed, "next_seq": index.lines + 1}))
    return messages


def saved_segments(out_dir: Path) -> list[dict[str, Any]]:
    """Segments of a finished job from its transcript (or the partial one a stop leaves)."""
    for name in ("transcript.json", "transcript.partial.json"):
        path = out_dir / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            return [
                {"start": s.get("start"), "end": s.get("end"), "text": s.get("text", "").strip()}
                for s in data.get("segments", [])
            ]
    return []


def kept_for_resume(out_dir: Path) -> int:
    """How many segments a resumed pipeline keeps from its partial transcript (blocking):
    its resume point's count, where it names one (segments of windows that finished out
    of order follow them and are transcribed again), else all; 0 without one."""
    try:
        data = json.loads((out_dir / "transcript.partial.json").read_text(encoding="utf-8"))
        resume = data.get("resume")
        return int(resume["segments"]) if isinstance(resume, dict) else len(data["segments"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def logged_segments(lines: list[str]) -> list[dict[str, Any]]:
    """The segments among a log's lines, numbered as they streamed (line n is seq n)."""
    return [
        {"seq": seq, "start": event.start, "end": event.end, "text": event.text}
        for seq, line in enumerate(lines, start=1)
        if isinstance(event := parse_line(line), Segment)
    ]
