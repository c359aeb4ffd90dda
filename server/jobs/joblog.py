"""A job's log file: human-readable lines, appended, with a size cap."""

from __future__ import annotations

from pathlib import Path


class JobLog:
    """Appends lines to a job's log file until its cap; then writes one marker and stops.

    Writes are small appends to the page cache, so they stay on the event loop; the file is
    unbuffered so a person's `tail -f` sees each line as it comes.
    """

    def __init__(self, path: Path, *, cap_bytes: int) -> None:
        self.path = path
        self.cap_bytes = cap_bytes
        self.capped = False
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab", buffering=0)
        self.written = self._file.tell()

    def write(self, line: str) -> None:
        if self.capped:
            return
        data = line.encode("utf-8", "replace") + b"\n"
        if self.written + len(data) > self.cap_bytes:
            self.capped = True
            cap_mb = self.cap_bytes / 1_000_000
            marker = (
                f"[transcriptor] log file reached its cap of {cap_mb:g} MB; "
                "further lines are not written here (they still stream live)\n"
            )
            self._file.write(marker.encode())
            return
        self._file.write(data)
        self.written += len(data)

    def close(self) -> None:
        self._file.close()
