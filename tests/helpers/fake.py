"""The fake pipeline (tests/fixtures/fake_pipeline.py): one builder of its command, in the
three shapes the tests hand it over (argv, one shell-quoted line, the server's flag)."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterable

from tests.helpers.audio import REPO

FAKE_PIPELINE = REPO / "tests" / "fixtures" / "fake_pipeline.py"


def fake_command(*flags: str) -> tuple[str, ...]:
    """argv of the fake pipeline with the given behaviour flags (Config.pipeline_command)."""
    return (sys.executable, str(FAKE_PIPELINE), *flags)


def fake_command_line(*flags: str) -> str:
    """The same command as one shell-quoted line (--pipeline-command's value, or
    TRANSCRIPTOR_PIPELINE_COMMAND)."""
    return shlex.join(fake_command(*flags))


def fake_pipeline_args(*flags: str) -> list[str]:
    """Server arguments that run the fake pipeline with the given behaviour flags."""
    return ["--pipeline-command", fake_command_line(*flags)]


def helper_pids(lines: Iterable[str]) -> list[int]:
    """Pids the fake pipeline announces in its `started N helper processes: [...]` line."""
    for line in lines:
        match = re.search(r"helper processes: \[([0-9, ]*)\]", line)
        if match:
            return [int(p) for p in match.group(1).split(",") if p.strip()]
    return []
