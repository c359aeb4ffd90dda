"""The int8 copy of a float model: the weights CTranslate2 makes at load, made once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.int8_copy import CACHE_ENV, int8_model
from pipeline.models import resolve_model

from .conftest import FIXTURE


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


def _load(path: str) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True)


def test_made_once_then_reused(cache: Path) -> None:
    bundled = resolve_model("tiny.en")
    copy = int8_model(bundled)
    assert Path(copy).parent == cache
    made = (Path(copy) / "model.bin").stat()
    assert made.st_size < (Path(bundled) / "model.bin").stat().st_size * 0.6  # int8, not float16
    assert sorted(p.name for p in Path(copy).iterdir()) == sorted(p.name for p in Path(bundled).iterdir())
    assert int8_model(bundled) == copy
    assert (Path(copy) / "model.bin").stat().st_mtime_ns == made.st_mtime_ns
    # No staging folder left behind; the lock file stays.
    assert sorted(p.name for p in cache.iterdir()) == sorted([Path(copy).name, f".{Path(copy).name}.lock"])
    # An int8 model has nothing to quantize: it loads as it is.
    assert int8_model(copy) == copy


def test_same_encoder_output_and_words_as_quantizing_at_load(cache: Path) -> None:
    from pipeline.audio import decode

    bundled = resolve_model("tiny.en")
    at_load, copied = _load(bundled), _load(int8_model(bundled))
    samples = decode(FIXTURE)
    features = at_load.feature_extractor(samples)[np.newaxis, :, :3000].astype(np.float32)
    features = np.pad(features, ((0, 0), (0, 0), (0, 3000 - features.shape[2])))
    encoded = [np.array(m.encode(features)) for m in (at_load, copied)]
    assert np.array_equal(encoded[0], encoded[1])  # bit for bit: the same weights

    def heard(model: Any) -> list[tuple[float, str, float]]:
        segments, _ = model.transcribe(samples, beam_size=5, language="en")
        return [(s.start, s.text, s.avg_logprob) for s in segments]

    assert heard(copied) == heard(at_load)


def test_falls_back_to_the_original_when_no_copy_can_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "int8"))
    said: list[str] = []
    bundled = resolve_model("tiny.en")
    assert int8_model(bundled, said.append) == bundled
    assert said and "quantizing at load" in said[0]


def test_an_unknown_format_loads_as_it_is(cache: Path, tmp_path: Path) -> None:
    odd = tmp_path / "odd-model"
    odd.mkdir()
    (odd / "model.bin").write_bytes((99).to_bytes(4, "little") + b"\0" * 16)
    assert int8_model(str(odd)) == str(odd)
    assert not [p for p in cache.iterdir() if not p.name.startswith(".")]  # no copy made


def test_a_worker_loads_the_copy(cache: Path, tmp_path: Path) -> None:
    from tests.helpers.pipeline_proc import run_pipeline

    done = run_pipeline(FIXTURE, "--out-dir", tmp_path / "out", "--formats", "txt")
    assert done.returncode == 0, done.stdout + done.stderr
    copies = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(copies) == 1 and (copies[0] / "model.bin").is_file()
    assert "int8 copy" not in done.stdout  # loaded without a fallback


def test_writers_at_once_make_one_copy(cache: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    bundled = resolve_model("tiny.en")
    with ThreadPoolExecutor(3) as pool:
        copies = set(pool.map(lambda _: int8_model(bundled), range(3)))
    assert len(copies) == 1 and copies != {bundled}
    assert not list(cache.glob(".staging-*"))


def test_a_half_made_copy_is_made_again(cache: Path) -> None:
    bundled = resolve_model("tiny.en")
    copy = Path(int8_model(bundled))
    (copy / "model.bin").unlink()  # as a copy killed before this version fsynced it
    assert int8_model(bundled) == str(copy)
    assert (copy / "model.bin").is_file()


def test_a_truncated_source_loads_as_it_is(cache: Path, tmp_path: Path) -> None:
    bundled = Path(resolve_model("tiny.en"))
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "model.bin").write_bytes((bundled / "model.bin").read_bytes()[:5_000_000])
    assert int8_model(str(truncated)) == str(truncated)


def test_a_copy_that_does_not_load_falls_back_to_the_original(cache: Path, tmp_path: Path) -> None:
    from tests.helpers.pipeline_proc import run_pipeline

    copy = Path(int8_model(resolve_model("tiny.en")))
    data = (copy / "model.bin").read_bytes()
    (copy / "model.bin").write_bytes(data[: len(data) // 2])  # damaged after it was made
    done = run_pipeline(FIXTURE, "--out-dir", tmp_path / "out", "--formats", "txt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the int8 copy did not load" in done.stdout
    assert "quick" in (tmp_path / "out" / "transcript.txt").read_text().lower()
    assert not copy.exists()  # removed, so the next job makes it again
