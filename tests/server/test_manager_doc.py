"""docs/process-manager.md's example runs and prints what the page says it prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_process_manager_example_runs(tmp_path: Path) -> None:
    page = (REPO / "docs" / "process-manager.md").read_text()
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    expected = page.split("It prints:\n\n```\n", 1)[1].split("```", 1)[0]
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "t.db")],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
