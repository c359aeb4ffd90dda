"""A job's row as the pipeline's command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from server.config import Config


def pipeline_argv(config: Config, job: dict[str, Any], out_dir: Path, *, resume: bool = False) -> list[str]:
    """The pipeline's command line; options a job has no value for (rows an older
    install left queued) fall back to the pipeline's own defaults. `resume`: the job was
    interrupted; the pipeline goes on from its own transcript.partial.json."""
    command = list(config.pipeline_command) or [sys.executable, "-m", "pipeline"]
    argv = [*command, str(job["original_path"]), "--out-dir", str(out_dir)]
    for column in ("model", "language", "processes", "threads", "chunk_seconds", "overlap_seconds"):
        if job.get(column) not in (None, ""):
            argv += ["--" + column.replace("_", "-"), str(job[column])]
    if config.allow_model_downloads:
        argv.append("--allow-download")
    if resume:
        argv.append("--resume")
    return [*argv, *option_flags(job.get("pipeline_options")), "--lifeline"]


def option_flags(encoded: str | None) -> list[str]:
    """The pipeline flags for a job's extra options (JSON: name -> value; a bool is a
    --flag/--no-flag switch)."""
    flags: list[str] = []
    for name, value in (json.loads(encoded) if encoded else {}).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + name.replace("_", "-"))
        elif value is not None:
            flags += [flag, str(value)]
    return flags
