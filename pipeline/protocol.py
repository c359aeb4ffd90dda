"""The stdout line format of the pipeline program; its one owner.

The pipeline prints human-readable lines. Two kinds also carry data the server parses:

    [progress] 12.50/60.00 s (20.8%)
    [segment 00:00:01.200 --> 00:00:03.400] And so my fellow Americans

Any other line is a plain log line. Both forms read well in a log file a person tails,
and they are stable: the server imports `parse_line` from here, never its own regex.

A standby (`python -m pipeline --standby`) prints one more line before it has a job,
`[standby] ready MODEL, ...`, once its model is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

STANDBY_READY = "[standby] ready"

_PROGRESS = re.compile(r"^\[progress\] (\d+(?:\.\d+)?)/(\d+(?:\.\d+)?) s\b")
_SEGMENT = re.compile(r"^\[segment (\d+):(\d\d):(\d\d\.\d{3}) --> (\d+):(\d\d):(\d\d\.\d{3})\] ?(.*)$")


@dataclass(frozen=True, slots=True)
class Progress:
    done_seconds: float
    total_seconds: float

    @property
    def fraction(self) -> float:
        if self.total_seconds <= 0:
            return 0.0
        return min(1.0, max(0.0, self.done_seconds / self.total_seconds))


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str


Event = Progress | Segment


def timestamp(seconds: float) -> str:
    """HH:MM:SS.mmm, the form used in segment lines."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def format_progress(done_seconds: float, total_seconds: float) -> str:
    percent = 100.0 * done_seconds / total_seconds if total_seconds > 0 else 0.0
    return f"[progress] {done_seconds:.2f}/{total_seconds:.2f} s ({percent:.1f}%)"


def format_segment(start: float, end: float, text: str) -> str:
    # One line per segment: newlines inside the text would split it.
    flat = " ".join(text.split())
    return f"[segment {timestamp(start)} --> {timestamp(end)}] {flat}"


def _seconds(hours: str, minutes: str, seconds: str) -> float:
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def parse_line(line: str) -> Event | None:
    """The event a line carries, or None for a plain log line."""
    if not line.startswith("["):
        return None
    match = _PROGRESS.match(line)
    if match:
        return Progress(float(match.group(1)), float(match.group(2)))
    match = _SEGMENT.match(line)
    if match:
        start = _seconds(*match.group(1, 2, 3))
        end = _seconds(*match.group(4, 5, 6))
        return Segment(start, end, match.group(7))
    return None


# -- lines a wrapper on a cluster node adds (pipeline/ray_entry.py) ---------------------
# They carry data for the server and are not log lines: the server takes them out of the
# stream before numbering, so a job's log reads the same wherever it ran.
METRICS_PREFIX = "[metrics] "
RESULT_PREFIX = "[result] "


@dataclass(frozen=True)
class NodeMetrics:
    """A Ray node's report of its job's process tree; memory in bytes, as measured."""

    cpu_percent: float
    memory_bytes: int
    num_processes: int


def format_metrics(metrics: NodeMetrics) -> str:
    return (
        f"{METRICS_PREFIX}cpu={metrics.cpu_percent:.1f} mem_bytes={metrics.memory_bytes} "
        f"procs={metrics.num_processes}"
    )


def parse_metrics(line: str) -> NodeMetrics | None:
    """The node's report in a metrics line, or None."""
    if not line.startswith(METRICS_PREFIX):
        return None
    try:
        fields = dict(part.split("=", 1) for part in line[len(METRICS_PREFIX) :].split())
        return NodeMetrics(float(fields["cpu"]), int(fields["mem_bytes"]), int(fields["procs"]))
    except (KeyError, ValueError):
        return None


def format_result(files: dict[str, bytes]) -> str:
    """The output files of a run as one line: JSON of name -> content, zlib, base64."""
    import base64
    import json
    import zlib

    document = {name: base64.b64encode(data).decode("ascii") for name, data in files.items()}
    packed = zlib.compress(json.dumps(document).encode("utf-8"), 6)
    return RESULT_PREFIX + base64.b64encode(packed).decode("ascii")


def parse_result(line: str) -> dict[str, bytes] | None:
    """The files a result line carries, or None if it is not one (or is damaged)."""
    if not line.startswith(RESULT_PREFIX):
        return None
    import base64
    import binascii
    import json
    import zlib

    try:
        document = json.loads(zlib.decompress(base64.b64decode(line[len(RESULT_PREFIX) :])))
        return {str(name): base64.b64decode(data) for name, data in document.items()}
    except (ValueError, zlib.error, binascii.Error, AttributeError):
        return None
