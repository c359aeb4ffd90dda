"""`python -m pipeline --standby`: warm up, take one job, run it as a cold run would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.protocol import STANDBY_READY
from tests.helpers.audio import FIXTURE_SENTENCE, REPO
from tests.helpers.pipeline_proc import pipeline_env
from tests.helpers.procs import alive_in_group, wait_until
from tests.helpers.wer import wer

from .conftest import FIXTURE

pytestmark = pytest.mark.slow


def _standby() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--standby"],
        cwd=REPO,
        env=pipeline_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_ready(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # blocks on the child's own output, not on a timer
        lines.append(line)
        if line.startswith(STANDBY_READY):
            return lines
    raise AssertionError("standby exited before it was ready: " + "".join(lines))


def test_standby_runs_one_job_warm(tmp_path: Path) -> None:
    with _standby() as proc:
        _wait_ready(proc)
        # Warming and waiting at low priority.
        assert all(p.nice() >= 10 for p in alive_in_group(proc.pid))
        out = tmp_path / "out"
        job = {
            "argv": [str(FIXTURE), "--out-dir", str(out), "--lifeline"],
            "env": {"TRANSCRIPTOR_JOB": "test:42"},
        }
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(job) + "\n")
        proc.stdin.flush()
        rest = proc.stdout.read()
        assert proc.wait(timeout=120) == 0, rest
    assert "before the job (warm start)" in rest
    document = json.loads((out / "transcript.json").read_text())
    assert document["config"]["warm_start"] is True
    assert wer(FIXTURE_SENTENCE, document["text"]) <= 0.15


def test_standby_dies_with_its_lifeline() -> None:
    with _standby() as proc:
        _wait_ready(proc)
        members = alive_in_group(proc.pid)
        assert len(members) >= 2  # the leader and its loaded worker
        assert proc.stdin is not None
        proc.stdin.close()  # what a SIGKILLed server's pipe does
        assert wait_until(lambda: not alive_in_group(proc.pid), timeout=30)
