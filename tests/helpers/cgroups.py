"""Whether this machine gives us cgroups; in CI their absence is a failure, not a skip."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from server.procs.cgroup import Cgroups, CgroupUnavailable, setup


def require_cgroups(memory_mb: int | None = None) -> Cgroups:
    """A fresh parent cgroup for a test (close() it after); skips only where cgroup v2 is
    genuinely unavailable, and fails instead when CI is set."""
    try:
        return setup(f"test-{uuid.uuid4().hex[:12]}", root=None, memory_mb=memory_mb)
    except CgroupUnavailable as why:
        if os.environ.get("CI"):
            raise AssertionError(f"CI is set but cgroups cannot be used: {why}") from None
        pytest.skip(f"cgroups unavailable: {why}")


def cgroup_dirs(name_part: str) -> list[Path]:
    """Cgroup directories (v2 and v1 memory) whose name contains name_part."""
    found: list[Path] = []
    for base in Path("/sys/fs/cgroup").rglob(f"*{name_part}*"):
        if base.is_dir():
            found.append(base)
    return found
