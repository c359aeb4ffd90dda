"""The environment a test hands to a child process (server, CLI, pipeline)."""

from __future__ import annotations

import os


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without TRANSCRIPTOR_* settings that would leak into a test, plus
    `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSCRIPTOR_")}
    env.update(extra)
    return env
