"""Rows for the store: the arguments of `Store.create_job`, for the store and process tests."""

from __future__ import annotations

from typing import Any


def job_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "filename": "talk.wav",
        "original_path": "/data/uploads/1.wav",
        "duration_seconds": 12.5,
        "model": "tiny.en",
        "language": "en",
        "processes": 2,
        "threads": 1,
        "chunk_seconds": 30.0,
        "overlap_seconds": 1.0,
    }
    args.update(overrides)
    return args
