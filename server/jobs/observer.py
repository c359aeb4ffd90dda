"""What the runner tells whoever measures it (the /metrics endpoint), through one seam.

The runner knows nothing of Prometheus: it calls these hooks at a job's few turning
points, and counts its log lines in a plain int (the pump is hot; a lock-taking counter
per line would cost more than the line itself).
"""

from __future__ import annotations

from typing import Protocol


class JobObserver(Protocol):
    def job_submitted(self, source: str) -> None: ...

    def job_started(self, queue_wait_seconds: float | None) -> None: ...

    def job_finished(self, status: str, run_seconds: float | None, audio_seconds: float) -> None: ...


class NoObserver:
    def job_submitted(self, source: str) -> None:
        pass

    def job_started(self, queue_wait_seconds: float | None) -> None:
        pass

    def job_finished(self, status: str, run_seconds: float | None, audio_seconds: float) -> None:
        pass


UPLOAD_SOURCE = "upload"


def source_label(source: str | None) -> str:
    """The job row's source as a metric label: NULL (pages, CLI) reads as `upload`."""
    return source or UPLOAD_SOURCE
