"""The one Settings object of a run, and how it fits the machine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.formats import FORMATS

# Chosen by measurement on a 2-core box: see benchmarks/PIPELINE_NOTES.md.
DEFAULT_MODEL = "tiny.en"
DEFAULT_BEAM_SIZE = 5
# The batch on a GPU, where batches pay. On CPU a window is encoded alone (batch 1): the
# replicas decode side by side, and a bigger batch costs memory (about 54 MiB of attention
# per 30-second piece, which malloc keeps) for no speed (PIPELINE_NOTES.md, "Memory").
DEFAULT_BATCH_SIZE = 8
CPU_BATCH_SIZE = 1
DEFAULT_OVERLAP_SECONDS = 3.0
MAX_AUTO_REPLICAS = 4


@dataclass(frozen=True, slots=True)
class Settings:
    input: Path
    out_dir: Path
    model: str = DEFAULT_MODEL
    model_path: str = ""  # filled in once the model is resolved
    language: str = "auto"
    processes: int = 1
    threads: int = 0  # 0: the cores divided among the processes
    replicas: int = 0  # model replicas per worker decoding batches side by side; 0: auto
    chunk_seconds: float = 0.0  # the most speech in one window; 0: automatic
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS  # unused: windows are cut in pauses
    beam_size: int = DEFAULT_BEAM_SIZE
    batch_size: int | None = None  # None: by device (fit_to_machine); 0: sequential decoding
    vad: bool = True
    formats: tuple[str, ...] = FORMATS
    device: str = "cpu"
    compute_type: str = "auto"
    lifeline: bool = False
    word_timestamps: bool | None = None  # None: off (windows need no merging by words)
    initial_prompt: str | None = None
    temperature: float | None = None  # None: faster-whisper's fallback schedule
    speakers: str = "off"  # off, auto or a count 1-10 (pipeline/speakers)
    warnings: tuple[str, ...] = field(default=())

    @property
    def language_code(self) -> str | None:
        return None if self.language == "auto" else self.language

    @property
    def effective_compute_type(self) -> str:
        if self.compute_type != "auto":
            return self.compute_type
        # int8 is the fastest on CPU at the same WER (PIPELINE_NOTES.md); GPUs like fp16.
        return "default" if self.device == "cuda" else "int8"

    @property
    def batched(self) -> bool:
        # Batching needs VAD to cut the audio into windows.
        return (self.batch_size is None or self.batch_size > 0) and self.vad


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def fit_to_machine(settings: Settings, cores: int) -> Settings:
    """Cap processes × threads at the core count.

    Over-subscribed CTranslate2 threads fight for cores and make every worker slower, so
    asking for more never makes a run slower than one process using all cores.
    """
    notes: list[str] = []
    processes = max(1, settings.processes)
    if processes > cores and settings.device != "cuda":
        notes.append(f"{settings.processes} processes on {cores} cores: using {cores}")
        processes = cores
    threads = settings.threads if settings.threads > 0 else max(1, cores // processes)
    if settings.device != "cuda" and processes * threads > cores:
        fitted = max(1, cores // processes)
        notes.append(
            f"{processes} processes × {threads} threads exceeds {cores} cores: "
            f"using {fitted} thread(s) per process"
        )
        threads = fitted
    replicas = settings.replicas if settings.replicas > 0 else auto_replicas(settings, cores, processes)
    batch_size = settings.batch_size
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE if settings.device == "cuda" else CPU_BATCH_SIZE
    return replace(
        settings,
        processes=processes,
        threads=threads,
        replicas=replicas,
        batch_size=batch_size,
        warnings=settings.warnings + tuple(notes),
    )


def auto_replicas(settings: Settings, cores: int, processes: int) -> int:
    """One replica per core of the worker when batches can run side by side.

    Each replica keeps all the worker's threads, so a job of one batch still uses every
    core; two replicas of 2 threads on 2 cores were no slower than two of 1 thread
    (GNU OpenMP stops spinning when over-subscribed). See PIPELINE_NOTES.md "Replicas".
    """
    if not settings.batched or settings.device == "cuda":
        return 1
    # Capped: a 5-minute file has about 11 windows, and more replicas than a few would
    # only cut them into batches too small to gain from batching.
    return max(1, min(MAX_AUTO_REPLICAS, cores // processes))
