"""Bad input: exit code 2, one `error: ` line, no output files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.audio import write_wav
from tests.helpers.pipeline_proc import run_pipeline

from .conftest import FIXTURE


def _make(tmp_path: Path, case: str) -> Path:
    if case == "missing":
        return tmp_path / "nope.mp3"
    if case == "empty":
        path = tmp_path / "empty.wav"
        path.write_bytes(b"")
        return path
    if case == "text":
        path = tmp_path / "notes.mp3"
        path.write_text("not audio\n" * 20)
        return path
    if case == "truncated":
        from pipeline.audio import decode

        whole = write_wav(tmp_path / "whole.wav", decode(FIXTURE))
        path = tmp_path / "cut.wav"
        path.write_bytes(whole.read_bytes()[:30_000])
        return path
    if case == "no samples":
        return write_wav(tmp_path / "nothing.wav", np.zeros(0, dtype=np.float32))
    raise AssertionError(case)


def _assert_refused(done, out_dir: Path, message: str) -> None:  # type: ignore[no-untyped-def]
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    assert errors[0].startswith(f"error: {message}"), errors
    assert "Traceback" not in done.stderr
    assert not out_dir.exists() or not any(out_dir.iterdir())


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "file not found"),
        ("empty", "file is empty"),
        ("text", "not an audio file"),
        ("truncated", "audio is truncated"),
        ("no samples", "file has no audio samples"),
    ],
)
def test_bad_input_is_refused(tmp_path: Path, case: str, message: str) -> None:
    out_dir = tmp_path / "out"
    done = run_pipeline(_make(tmp_path, case), "--out-dir", out_dir, timeout=30)
    _assert_refused(done, out_dir, message)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("no-such-model", "unknown model 'no-such-model'"),
        ("small", "model 'small' is not available offline; pass --model /path/to/model"),
        # The hub refuses this id (ValueError); it was swallowed as "not cached" before.
        ("owner/bad..name", "invalid model name 'owner/bad..name'"),
    ],
)
def test_unavailable_model_is_refused_fast(tmp_path: Path, model: str, message: str) -> None:
    out_dir = tmp_path / "out"
    # HF_HUB_OFFLINE=1 is set by run_pipeline; the timeout catches a hang on the network.
    done = run_pipeline(FIXTURE, "--out-dir", out_dir, "--model", model, "--allow-download", timeout=30)
    _assert_refused(done, out_dir, message)


def test_model_download_needs_allow_download(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    done = run_pipeline(FIXTURE, "--out-dir", out_dir, "--model", "small", timeout=30)
    _assert_refused(done, out_dir, "model 'small' is not on this machine, and model downloads are off")


def test_bare_model_name_is_not_a_folder_in_the_working_directory(tmp_path: Path) -> None:
    # A folder named like a model, in the directory the pipeline runs in, that looks like a
    # CTranslate2 model: a bare name must not load it.
    cwd = tmp_path / "cwd"
    (cwd / "evil").mkdir(parents=True)
    (cwd / "evil" / "model.bin").write_bytes(b"not a model")
    (cwd / "evil" / "config.json").write_text("{}")
    out_dir = tmp_path / "out"
    done = run_pipeline(FIXTURE, "--out-dir", out_dir, "--model", "evil", timeout=30, cwd=cwd)
    _assert_refused(done, out_dir, "unknown model 'evil'")


def test_bad_option_exits_2(tmp_path: Path) -> None:
    done = run_pipeline(FIXTURE, "--out-dir", tmp_path, "--formats", "doc", timeout=30)
    assert done.returncode == 2
    assert "unknown format" in done.stderr


def test_help_documents_every_option() -> None:
    done = run_pipeline("--help", timeout=30)
    assert done.returncode == 0
    for flag in (
        "--out-dir --model --language --processes --threads --chunk-seconds "
        "--overlap-seconds --beam-size --batch-size --vad --formats --device "
        "--compute-type --lifeline --allow-download"
    ).split():
        assert flag in done.stdout
