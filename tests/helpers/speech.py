"""Spoken test audio made with espeak-ng and sox, and a client's view of a live session."""

from __future__ import annotations

import base64
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

RATE = 24000
FRAME_BYTES = 2 * RATE // 25  # 40 ms of pcm16


@dataclass(frozen=True)
class Utterance:
    text: str
    start: float  # seconds from the start of the audio
    end: float


def speak(
    path: Path, texts: list[str], *, pause: float = 1.2, voices: tuple[str, ...] = ("en-us",)
) -> list[Utterance]:
    """`path`: a 24 kHz pcm16 mono WAV of `texts` said in turn (voices alternating), with
    `pause` seconds of silence before each and after the last; returns where each is."""
    pcm = bytearray()
    spoken: list[Utterance] = []
    silence = bytes(2 * int(pause * RATE))
    for number, text in enumerate(texts):
        raw = path.with_suffix(f".{number}.raw.wav")
        voice = voices[number % len(voices)]
        subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True)
        one = path.with_suffix(f".{number}.wav")
        subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(one)], check=True)
        with wave.open(str(one)) as audio:
            samples = audio.readframes(audio.getnframes())
        raw.unlink()
        one.unlink()
        pcm += silence
        start = len(pcm) / 2 / RATE
        pcm += samples
        spoken.append(Utterance(text, start, len(pcm) / 2 / RATE))
    pcm += silence
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(bytes(pcm))
    return spoken


def pcm_of(path: Path) -> bytes:
    with wave.open(str(path)) as audio:
        return audio.readframes(audio.getnframes())


def append_events(pcm: bytes, frame_bytes: int = FRAME_BYTES) -> list[dict[str, Any]]:
    return [
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + frame_bytes]).decode()}
        for i in range(0, len(pcm), frame_bytes)
    ]


def validate(raw: str | bytes) -> Any:
    """The server event as the SDK's own pydantic model, validated (not merely parsed)."""
    from openai.types.realtime import RealtimeServerEvent

    return pydantic.TypeAdapter(RealtimeServerEvent).validate_json(raw)


def word_set(text: str) -> set[str]:
    return {w.strip(".,!?;:").lower() for w in text.split() if w.strip(".,!?;:")}
