"""Audio for the tests: small files made at test time (a tone is audio enough for upload
checks), and the speech clips with what they say."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SPEECH_CLIP = REPO / "tests" / "fixtures" / "speech.ogg"
JFK = REPO.parent / "shared" / "audio" / "jfk.flac"
FIXTURE_SENTENCE = (
    "The quick brown fox jumps over the lazy dog. "
    "Please bring the red book to the kitchen table tomorrow morning."
)
JFK_SENTENCE = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


def tone_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return path


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def repeated_speech(
    path: Path, copies: int, gap_seconds: float = 0.5, source: Path = SPEECH_CLIP
) -> Path:
    """`source` `copies` times with short silences between, as a 16 kHz WAV."""
    from pipeline.audio import SAMPLE_RATE, decode

    speech = decode(source)
    gap = np.zeros(int(gap_seconds * SAMPLE_RATE), dtype=np.float32)
    return write_wav(path, np.concatenate([np.concatenate([speech, gap])] * copies))
