"""Fixtures for the speaker tests: espeak-ng conversations built once per session."""

from __future__ import annotations

import pytest

from benchmarks.conversations import Conversation, build


@pytest.fixture(scope="session")
def dialog(tmp_path_factory: pytest.TempPathFactory) -> Conversation:
    """Two espeak-ng voices taking turns for about 40 s, with its RTTM."""
    return build(2, seconds=40.0, seed=7, folder=tmp_path_factory.mktemp("dialog"))
