"""probe(), decode() and stream(); no model involved."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio import ProbeError, decode, probe, stream
from tests.helpers.audio import REPO, write_wav

from .conftest import FIXTURE


def test_probe_reads_the_fixture_duration() -> None:
    assert probe(FIXTURE) == pytest.approx(7.2, abs=0.1)


def test_decode_gives_16khz_mono_float() -> None:
    samples = decode(FIXTURE)
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert len(samples) / 16_000 == pytest.approx(7.2, abs=0.1)
    assert 0.05 < float(np.abs(samples).max()) <= 1.0


def test_probe_does_not_import_faster_whisper() -> None:
    code = (
        "import sys, pipeline.audio\n"
        "assert 'faster_whisper' not in sys.modules\n"
        "assert 'ctranslate2' not in sys.modules\n"
        "assert 'numpy' not in sys.modules, 'probe needs only av'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def _truncated(tmp_path: Path) -> Path:
    wav = write_wav(tmp_path / "whole.wav", decode(FIXTURE))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav.read_bytes()[:20_000])
    return cut


def _flac(path: Path) -> Path:
    """The fixture as FLAC, whose header states the number of samples."""
    import av

    samples = (decode(FIXTURE) * 32767).astype(np.int16)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=16_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 16_000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each bad input, with the start of the message it must produce."""
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio at all\n" * 10)
    silent_header = write_wav(tmp_path / "nothing.wav", np.zeros(0, dtype=np.float32))
    flac = _flac(tmp_path / "whole.flac")
    flac_cut = tmp_path / "cut.flac"
    flac_cut.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    hls = tmp_path / "playlist.mp3"
    hls.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{FIXTURE}\n#EXT-X-ENDLIST\n")
    hls_named = tmp_path / "playlist.m3u8"
    hls_named.write_text(hls.read_text())
    concat = tmp_path / "list.mp3"
    concat.write_text(f"ffconcat version 1.0\nfile '{FIXTURE}'\n")
    return {
        "missing": (tmp_path / "nope.wav", "file not found"),
        "empty": (empty, "file is empty"),
        "text": (text, "not an audio file"),
        "truncated wav": (_truncated(tmp_path), "audio is truncated"),
        "truncated flac": (flac_cut, "audio is truncated"),
        "no samples": (silent_header, "file has no audio samples"),
        "hls as mp3": (hls, "not an audio file"),
        "hls playlist": (hls_named, "not an audio file"),
        "ffconcat as mp3": (concat, "not an audio file"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty",
        "text",
        "truncated wav",
        "truncated flac",
        "no samples",
        "hls as mp3",
        "hls playlist",
        "ffconcat as mp3",
    ],
)
def test_probe_refuses_bad_input(tmp_path: Path, case: str) -> None:
    path, message = _bad_inputs(tmp_path)[case]
    with pytest.raises(ProbeError) as caught:
        probe(path)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_probe_refuses_video_without_audio(tmp_path: Path) -> None:
    import av

    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 32, 32
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(ProbeError, match=r"^file has no audio stream"):
        probe(path)


def test_stream_gives_decode_in_blocks_and_skips_exactly() -> None:
    whole = decode(FIXTURE)
    blocks = list(stream(FIXTURE, first_seconds=1.0, block_seconds=2.5))
    assert [len(b) for b in blocks[:-1]] == [16_000] + [40_000] * (len(blocks) - 2)
    assert 0 < len(blocks[-1]) <= 40_000
    assert np.array_equal(np.concatenate(blocks), whole)
    rest = np.concatenate(list(stream(FIXTURE, 2.0, 2.0, skip_seconds=3.25)))
    assert np.array_equal(rest, whole[52_000:])
    assert list(stream(FIXTURE, skip_seconds=60.0)) == []  # resumed at the very end
