"""A job's log file: human-readable lines, appended, with a size cap; and its index.

Every line the job publishes goes through `JobLog.write`, so the n-th write is the line the
channel numbers n. The file holds lines 1..kept (then, if capped, one marker line that has
no number); lines past the cap still stream live with their own numbers. At close the
counts go to a small index file beside the log, so a replay never has to count the lines
of a log that may be 100 MB (issue #14).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from server.config import Config

CAP_MARKER_PREFIX = "[transcriptor] log file reached its cap"


@dataclass(frozen=True)
class LogIndex:
    lines: int  # lines the job published: the last sequence number
    kept: int  # of those, the first `kept` are in the file

    @property
    def capped(self) -> bool:
        return self.lines > self.kept


def index_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".index.json")


def read_index(log_path: Path) -> LogIndex | None:
    """The counts written when the job's log closed; None for a log without (or a bad) one."""
    try:
        data = json.loads(index_path(log_path).read_text(encoding="utf-8"))
        lines, kept = data["lines"], data["kept"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not (isinstance(lines, int) and isinstance(kept, int) and 0 <= kept <= lines):
        return None
    return LogIndex(lines, kept)


class JobLog:
    """Appends lines to a job's log file until its cap; then writes one marker and stops.

    Writes are small appends to the page cache, so they stay on the event loop; the file is
    unbuffered so a person's `tail -f` sees each line as it comes.
    """

    def __init__(self, path: Path, *, cap_bytes: int, before: LogIndex | None = None) -> None:
        """`before`: the counts of the lines already in the file (a job followed again
        after a restart), so numbering and the index go on from them."""
        self.path = path
        self.cap_bytes = cap_bytes
        self.capped = before.capped if before else False
        self.lines = before.lines if before else 0
        self.kept = before.kept if before else 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab", buffering=0)
        self.written = self._file.tell()

    def write(self, line: str) -> None:
        self.lines += 1
        if self.capped:
            return
        data = line.encode("utf-8", "replace") + b"\n"
        if self.written + len(data) > self.cap_bytes:
            self.capped = True
            cap_mb = self.cap_bytes / 2**20  # MiB, as --log-cap-mb is
            marker = (
                f"{CAP_MARKER_PREFIX} of {cap_mb:g} MiB; "
                "further lines are not written here (they still stream live)\n"
            )
            self._file.write(marker.encode())
            return
        self._file.write(data)
        self.written += len(data)
        self.kept += 1

    def close(self) -> None:
        self._file.close()
        # A few bytes, once per job: fine on the event loop.
        index = {"lines": self.lines, "kept": self.kept}
        index_path(self.path).write_text(json.dumps(index), encoding="utf-8")


def job_log_path(config: Config, job_id: int) -> Path:
    """Where a job's log file goes unless its row names one already."""
    return config.logs_dir / f"job-{job_id}.log"


def open_job_log(config: Config, path: Path, before: LogIndex | None = None) -> JobLog:
    """A job's log file, appended to, with the configured cap."""
    return JobLog(path, cap_bytes=config.log_cap_bytes, before=before)


def reopen_job_log(config: Config, path: Path) -> tuple[JobLog, list[str]]:
    """A job's log to go on with after a restart, and the lines it holds (blocking).

    A line cut by a crash has no newline: it is cut off, so the file holds exactly the
    lines counted (a re-attach's tail sends it again whole). The numbering goes on from
    the index a clean close left, else from the lines there."""
    try:
        with path.open("r+b") as file:
            data = file.read()
            file.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        data = b""
    lines = data[: data.rfind(b"\n") + 1].decode("utf-8", "replace").splitlines()
    if lines and lines[-1].startswith(CAP_MARKER_PREFIX):
        lines.pop()  # not a numbered line
    index = read_index(path)
    if index is None or index.kept != len(lines):
        index = LogIndex(lines=len(lines), kept=len(lines))
    return open_job_log(config, path, index), lines
