"""What the leader knows about one run, and the two ways a run ends early."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from pipeline.transcript import Segment

if TYPE_CHECKING:
    from pipeline.settings import Settings
    from pipeline.worker import WarmWorker


class Stopped(Exception):
    """Raised by a signal handler in the leader; carries the reason and the exit code."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


class WorkerFailed(RuntimeError):
    pass


@dataclass
class Run:
    """What the leader knows about a run; enough to write partial output when stopped."""

    settings: Settings
    duration: float = 0.0
    language: str | None = None
    started: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)
    workers: list[Any] = field(default_factory=list)
    connections: dict[int, Connection] = field(default_factory=dict)
    worker_peaks: dict[int, int] = field(default_factory=dict)
    # Printed, in order: everything the audio before `released_until` seconds gave.
    segments: list[Segment] = field(default_factory=list)
    released_until: float = 0.0
    resumed_from: float | None = None
    warm: WarmWorker | None = None  # a worker loaded before the job (standby mode)
    preloaded: dict[int, float] = field(default_factory=dict)  # worker -> its load seconds
    speaker_stage: tuple[Any, Connection] | None = None  # the speakers child and its pipe
    speakers: dict[str, Any] = field(default_factory=dict)  # what the speaker stage found

    def worker_pids(self) -> list[int]:
        helper = [self.speaker_stage[0]] if self.speaker_stage else []
        return [p.pid for p in [*self.workers, *helper] if p.pid is not None]

    def meta(self) -> dict[str, Any]:
        s = self.settings
        return {
            "input": str(s.input),
            "language": self.language,
            "duration": round(self.duration, 3),
            "model": s.model,
            "model_path": s.model_path,
            "config": {
                "processes": s.processes,
                "threads": s.threads,
                "replicas": s.replicas,
                "chunk_seconds": s.chunk_seconds,
                "overlap_seconds": s.overlap_seconds,
                "beam_size": s.beam_size,
                "batch_size": s.batch_size if s.batched else 0,
                "vad": s.vad,
                "word_timestamps": s.word_timestamps,
                "warm_start": bool(self.preloaded),
                "resumed_from": self.resumed_from,
                "device": s.device,
                "compute_type": s.effective_compute_type,
            },
            **({"speakers": self.speakers} if self.speakers else {}),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "memory": {
                "leader_peak_mb": round(leader_peak_bytes() / 1_048_576, 1),
                "worker_peak_mb": [
                    round(self.worker_peaks[k] / 1_048_576, 1) for k in sorted(self.worker_peaks)
                ],
            },
        }


def leader_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
