"""Fixtures for the pipeline tests; the processes themselves: tests/helpers/pipeline_proc.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.audio import SPEECH_CLIP, repeated_speech

FIXTURE = SPEECH_CLIP


@pytest.fixture(scope="session")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 60 s of speech: long enough that a run is still busy when we act on it."""
    return repeated_speech(tmp_path_factory.mktemp("audio") / "long.wav", copies=8)
