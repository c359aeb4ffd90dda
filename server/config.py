"""Every server setting, with its name, default and help text, in one frozen dataclass."""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "TRANSCRIPTOR_"


def _default_concurrency() -> int:
    # Transcription is CPU-bound and one job already uses every core it is given.
    return max(1, (os.cpu_count() or 1) // 2)


def setting(default: Any, help: str, *, flag: str | None = None, metavar: str | None = None) -> Any:
    meta = {"help": help, "flag": flag, "metavar": metavar}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8080, "port to listen on")
    data_dir: Path = setting(Path("./data"), "holds transcriptor.db, uploads/, logs/ and outputs/")
    token: str | None = setting(
        None,
        "access token required on every page, API call and websocket; generated when "
        "listening on a non-loopback address without one",
    )
    disconnect_grace: float = setting(
        5.0, "seconds to wait after the last client leaves before cancelling", metavar="SECONDS"
    )
    kill_grace: float = setting(5.0, "seconds between SIGTERM and SIGKILL", metavar="SECONDS")
    heartbeat_interval: float = setting(
        5.0, "seconds between heartbeats and orphan checks", metavar="SECONDS"
    )
    metrics_interval: float = setting(
        1.0, "seconds between samples of each job's process tree", metavar="SECONDS"
    )
    orphan_timeout: float = setting(
        300.0, "heartbeat age in seconds after which a job is orphaned", metavar="SECONDS"
    )
    max_concurrent_jobs: int = setting(
        _default_concurrency, "jobs running at once; the rest queue (default: cores / 2)", metavar="N"
    )
    max_upload_mb: float = setting(2048.0, "largest upload in MB", metavar="N")
    disk_reserve_mb: float = setting(500.0, "free disk space an upload must leave, in MB", metavar="N")
    log_cap_mb: float = setting(100.0, "size cap of each job's log file, in MB", metavar="N")
    pipeline_command: tuple[str, ...] = setting(
        (),
        "command that runs the transcription program, shell-quoted "
        "(default: this Python with -m pipeline)",
        metavar="CMD",
    )
    default_model: str = setting("tiny.en", "model used when an upload names none", metavar="NAME")
    default_processes: int = setting(1, "worker processes per job by default", metavar="N")
    default_threads: int = setting(
        0, "CPU threads per worker by default (0: cores / max concurrent jobs)", metavar="N"
    )
    default_chunk_seconds: float = setting(
        0.0, "chunk length for parallel workers by default (0: no chunking)", metavar="SECONDS"
    )
    default_overlap_seconds: float = setting(
        3.0, "overlap between chunks by default (the pipeline's own default)", metavar="SECONDS"
    )
    loop_lag_interval: float = setting(
        0.0,
        "seconds between event-loop lag samples, reported by /api/health as loop_lag_ms "
        "(0: off; the benchmarks turn it on)",
        metavar="SECONDS",
    )

    def __post_init__(self) -> None:
        if self.default_threads <= 0:
            # Full queue, full machine, no oversubscription: the running jobs share the cores.
            threads = max(1, (os.cpu_count() or 1) // max(1, self.max_concurrent_jobs))
            object.__setattr__(self, "default_threads", threads)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "transcriptor.db"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def is_loopback(self) -> bool:
        return self.host in {"127.0.0.1", "localhost", "::1"} or self.host.startswith("127.")


def documented_settings() -> list[tuple[str, str, str, str]]:
    """(flag, environment variable, default, help) for each setting, for --help and the README."""
    rows = []
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        if f.default is not MISSING:
            default = f.default
        else:
            default = "(computed)"
        rows.append((flag, env, str(default), f.metadata["help"]))
    return rows
