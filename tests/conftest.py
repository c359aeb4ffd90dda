from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from server.config import Config
from server.store import Store
from tests.helpers.audio import tone_wav
from tests.helpers.fake import fake_command


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    def make(*fake_flags: str, **overrides: Any) -> Config:
        base = Config(
            data_dir=tmp_path / "data",
            disconnect_grace=0.5,
            kill_grace=1.0,
            heartbeat_interval=0.5,
            metrics_interval=0.2,
            max_concurrent_jobs=4,
            disk_reserve_mb=0,
            pipeline_command=fake_command(*fake_flags),
        )
        return replace(base, **overrides)

    return make


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    return tone_wav(tmp_path / "tone.wav")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A real SQLite store in the test's own folder."""
    s = await Store.open(tmp_path / "transcriptor.db")
    try:
        yield s
    finally:
        await s.close()
