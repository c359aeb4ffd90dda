"""`transcriptor transcribe`: the pipeline as a child, piped or on a terminal, and Ctrl-C."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers.audio import JFK, REPO, SPEECH_CLIP
from tests.helpers.cli_proc import cli, start_cli
from tests.helpers.env import clean_env
from tests.helpers.fake import fake_command, fake_command_line
from tests.helpers.procs import is_alive
from tests.helpers.waiting import wait_for


def fake_env(*flags: str) -> dict[str, str]:
    return clean_env(TRANSCRIPTOR_PIPELINE_COMMAND=fake_command_line(*flags))


def test_piped_output_is_the_pipelines_own(tone: Path, tmp_path: Path) -> None:
    flags = ("--lines", "30", "--interval", "0")
    out_dir = tmp_path / "out"
    result = cli("transcribe", str(tone), "--out-dir", str(out_dir), env=fake_env(*flags))
    direct = subprocess.run(
        fake_command(str(tone), "--out-dir", str(tmp_path / "direct"), *flags),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == direct.stdout
    assert "[progress] 30.00/30.00 s (100.0%)" in result.stdout.splitlines()
    assert "\r" not in result.stdout
    assert (out_dir / "transcript.txt").read_text() == "segment 1 segment 2 segment 3\n"


def test_exit_code_is_the_pipelines(tone: Path, tmp_path: Path) -> None:
    result = cli(
        "transcribe", str(tone), "--out-dir", str(tmp_path),
        env=fake_env("--lines", "2", "--interval", "0", "--exit-code", "3"),
    )  # fmt: skip
    assert result.returncode == 3


def test_out_dir_defaults_to_a_folder_named_after_the_file(tone: Path, tmp_path: Path) -> None:
    result = cli("transcribe", str(tone), env=fake_env("--lines", "2", "--interval", "0"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tone-transcript" / "transcript.txt").is_file()


def test_bad_pipeline_option_is_a_usage_error(tone: Path) -> None:
    result = cli("transcribe", str(tone), "--processes", "0", env=fake_env())
    assert result.returncode == 2
    assert "transcriptor transcribe: error: argument --processes" in result.stderr


def test_help_shows_the_pipeline_options() -> None:
    result = cli("transcribe", "--help")
    assert result.returncode == 0
    assert "usage: transcriptor transcribe" in result.stdout
    for option in ("--out-dir", "--model", "--processes", "--chunk-seconds", "--formats"):
        assert option in result.stdout


def read_pty(fd: int, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            data += chunk
        elif proc.poll() is not None:
            break
    return data


def test_terminal_gets_a_progress_bar_and_segment_text(tone: Path, tmp_path: Path) -> None:
    parent, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "transcribe", str(tone), "--out-dir", str(tmp_path)],
        cwd=REPO,
        env=fake_env("--lines", "20", "--interval", "0.01"),
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=subprocess.DEVNULL,
    )
    os.close(child)
    try:
        screen = read_pty(parent, proc, timeout=30).decode()
        assert proc.wait(timeout=10) == 0
    finally:
        os.close(parent)
    assert "[progress]" not in screen
    assert "\r\x1b[K[" in screen and "100.0%" in screen  # the bar, redrawn in place
    assert "00:00:00.000 → 00:00:01.000  segment 1" in screen
    assert "line 20 of 20" in screen
    assert screen.rstrip("\r\n").endswith("\r\x1b[K")  # the bar is gone at the end


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_ctrl_c_stops_the_pipeline_and_everything_it_started(tone: Path, tmp_path: Path) -> None:
    proc = start_cli(
        "transcribe", str(tone), "--out-dir", str(tmp_path),
        env=fake_env("--lines", "1000", "--interval", "0.05", "--grandchildren", "2"),
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("started 2 helper processes"), first
    started = wait_for(lambda: len(descendants(proc.pid)) >= 3 and descendants(proc.pid), 10, "helpers")
    proc.send_signal(signal.SIGINT)  # our own CLI process, as Ctrl-C would
    try:
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    code = proc.returncode
    assert code == 130, stderr
    assert "stopping" in stderr
    assert wait_for(lambda: not any(is_alive(p.pid) for p in started), 5, "every child to be gone")


@pytest.mark.slow
def test_real_pipeline_piped_prints_plain_lines_and_writes_transcripts(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    result = cli(
        "transcribe", str(SPEECH_CLIP), "--out-dir", str(out_dir), "--threads", "2",
        env=clean_env(), timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"input {SPEECH_CLIP}")
    assert any(line.startswith("[progress] ") for line in lines)
    segments = [line for line in lines if line.startswith("[segment ")]
    assert segments and "quick brown fox" in segments[0]
    assert lines[-1].startswith("wrote ")
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    for kind in ("txt", "srt", "vtt", "json"):
        assert (out_dir / f"transcript.{kind}").stat().st_size > 0
    assert "kitchen table" in (out_dir / "transcript.txt").read_text()


@pytest.mark.slow
def test_ctrl_c_stops_the_real_pipeline_cleanly(tmp_path: Path) -> None:
    clip = JFK if JFK.exists() else SPEECH_CLIP
    proc = start_cli("transcribe", str(clip), "--out-dir", str(tmp_path), "--threads", "1", env=clean_env())
    assert proc.stdout is not None
    for line in proc.stdout:
        if "started on worker" in line:
            break
    started = descendants(proc.pid)
    assert started, "the pipeline and its worker"
    proc.send_signal(signal.SIGINT)  # our own CLI process, as Ctrl-C would
    try:
        out, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + stderr
    assert "stopped by SIGINT" in out
    assert (tmp_path / "transcript.partial.json").is_file()
    assert wait_for(lambda: not any(is_alive(p.pid) for p in started), 5, "every child to be gone")
