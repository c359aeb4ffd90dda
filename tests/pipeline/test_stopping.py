"""How the program stops: SIGTERM, the death of its parent, and stdin without --lifeline.

Only processes these tests start are ever signalled.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers.audio import REPO
from tests.helpers.pipeline_proc import lines_until, pipeline_env, run_pipeline, start_pipeline
from tests.helpers.procs import wait_until

from .conftest import FIXTURE


def _gone(process: psutil.Process) -> bool:
    """Dead, or a zombie nobody has reaped yet (it runs no code)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_sigterm_stops_within_a_second_and_keeps_partial_output(
    tmp_path: Path, long_speech: Path
) -> None:
    out_dir = tmp_path / "out"
    process = start_pipeline(
        long_speech, "--out-dir", out_dir, "--processes", "2", "--chunk-seconds", "10"
    )
    try:
        lines_until(process, "[segment ", timeout=60)
        family = psutil.Process(process.pid).children(recursive=True)
        assert len(family) >= 2
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stdout is not None
    with process.stdout:
        rest = process.stdout.read()
    assert code == 143, rest
    assert elapsed < 1.0, f"took {elapsed:.2f} s to stop"
    last = [line for line in rest.splitlines() if line.strip()][-1]
    assert last.startswith("stopped by SIGTERM"), rest
    partial = json.loads((out_dir / "transcript.partial.json").read_text())
    assert partial["partial"] is True
    assert partial["segments"], "the segment printed before SIGTERM is kept"
    assert not (out_dir / "transcript.json").exists()
    # The workers die with their leader (PDEATHSIG): wait for that, bounded.
    assert wait_until(lambda: all(_gone(p) for p in family), timeout=5), [
        p.pid for p in family if not _gone(p)
    ]


# The "parent": starts the pipeline as the server does (stdin a pipe it keeps open, a new
# session) and then just lives until the test kills it.
WRAPPER = """
import subprocess, sys, time
subprocess.Popen(
    [sys.executable, "-m", "pipeline", *sys.argv[1:]],
    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    start_new_session=True,
)
time.sleep(600)
"""


def _job_processes(wrapper: psutil.Process, workers: int, timeout: float = 30) -> list[psutil.Process]:
    """The pipeline and its workers, once the pipeline has started `workers` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = wrapper.children()
        if children:
            pipeline = children[0]
            spawned = [
                p for p in pipeline.children() if "multiprocessing.spawn" in " ".join(p.cmdline())
            ]
            if len([p for p in spawned if "spawn_main" in " ".join(p.cmdline())]) >= workers:
                return [pipeline, *pipeline.children(recursive=True)]
        time.sleep(0.05)
    raise AssertionError("the pipeline did not start its workers")


@pytest.mark.slow
def test_lifeline_kills_the_job_when_the_parent_is_killed(
    tmp_path: Path, long_speech: Path
) -> None:
    for attempt in range(10):
        wrapper = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRAPPER,
                str(long_speech),
                *("--out-dir", str(tmp_path / f"out{attempt}")),
                *("--processes", "2", "--chunk-seconds", "15", "--lifeline"),
            ],
            cwd=REPO,
            env=pipeline_env(),
            stdin=subprocess.DEVNULL,
        )
        job: list[psutil.Process] = []
        try:
            job = _job_processes(psutil.Process(wrapper.pid), workers=2)
            # Vary the moment: while the workers load the model, or while they transcribe.
            time.sleep(0.15 * attempt)
            wrapper.kill()
            wrapper.wait()
            wait_until(lambda procs=job: all(_gone(p) for p in procs), 2.0)
            alive = [p.pid for p in job if not _gone(p)]
            assert not alive, f"attempt {attempt}: still alive 2 s later: {alive}"
        finally:
            if wrapper.poll() is None:
                wrapper.kill()
                wrapper.wait()
            for process in job:
                if not _gone(process):
                    process.kill()


def test_without_lifeline_stdin_at_dev_null_runs_to_completion(tmp_path: Path) -> None:
    done = run_pipeline(FIXTURE, "--out-dir", tmp_path, "--formats", "txt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fox" in (tmp_path / "transcript.txt").read_text()


def test_with_lifeline_an_open_stdin_lets_it_finish(tmp_path: Path) -> None:
    process = start_pipeline(
        FIXTURE, "--out-dir", tmp_path, "--formats", "txt", "--lifeline", stdin=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        # stdin stays open (as the server keeps it) until the run is over.
        output = process.stdout.read()
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdin.close()
        process.stdout.close()
    assert code == 0, output
    assert (tmp_path / "transcript.txt").exists()
