from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from server.config import Config
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
def ray_config(make_config: Callable[..., Config], ray_address: str) -> Callable[..., Config]:
    """The app-level test config (tests/conftest.py), running its jobs on the Ray head."""

    def make(*fake_flags: str, **overrides: Any) -> Config:
        ray = {"host": "127.0.0.1", "port": free_port(), "executor": "ray", "ray_address": ray_address}
        return make_config(*fake_flags, **{**ray, "max_concurrent_jobs": 2, **overrides})

    return make
