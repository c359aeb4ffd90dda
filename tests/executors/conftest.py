from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from server.config import Config
from tests.conftest import fake_command
from tests.helpers.audio import tone_wav
from tests.helpers.server_proc import free_port


def require_ray() -> None:
    """Skip without Ray, except in CI, which installs it and must run these tests."""
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI"):
            pytest.fail("ray is not installed; CI installs it with the ray extra (.[test,dev,ray])")
        pytest.skip("ray is not installed (pip install '.[ray]')")


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A real Ray head on loopback for this module's tests, stopped after them."""
    require_ray()
    from tests.helpers.ray_head import ray_head

    with ray_head() as head:
        yield head.address


@pytest.fixture
def ray_config(tmp_path: Path, ray_address: str) -> Callable[..., Config]:
    def make(*fake_flags: str, **overrides: Any) -> Config:
        port = free_port()
        base = Config(
            data_dir=tmp_path / "data",
            host="127.0.0.1",
            port=port,
            executor="ray",
            ray_address=ray_address,
            disconnect_grace=0.5,
            kill_grace=1.0,
            heartbeat_interval=0.5,
            metrics_interval=0.2,
            max_concurrent_jobs=2,
            disk_reserve_mb=0,
            pipeline_command=fake_command(*fake_flags),
        )
        return replace(base, **overrides)

    return make


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    return tone_wav(tmp_path / "tone.wav")
