"""Small audio files made at test time (a tone is audio enough for upload checks)."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPEECH_CLIP = REPO / "tests" / "fixtures" / "speech.ogg"
JFK = REPO.parent / "shared" / "audio" / "jfk.flac"


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
