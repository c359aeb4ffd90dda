"""Synthetic conversations for the speaker benchmark: espeak-ng voices taking turns.

Each conversation is a 16 kHz mono WAV of about 2.5 minutes where 2, 3 or 4 voices
(different voice files, pitch and speed) speak turns of 2-10 s with short pauses, and an
RTTM file with the reference turns (trimmed to where the voice is audible). They are
built once into a cache folder outside the repo and reused.

    python -m benchmarks.conversations [--speakers 2 3 4] [--seconds 150]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16_000
# (voice, pitch 0-99, words per minute): distinct voice files, pitch and speed.
# Picked from 14 espeak-ng voices as the four whose voice prints differ most (pairwise
# cosine of their mean prints at most 0.76; one voice's windows sit at 0.9 to its mean).
VOICES = (
    ("en-us+m3", 35, 165),
    ("en-us+f4", 85, 140),
    ("en+klatt", 40, 160),
    ("en+grandma", 75, 135),
)
SENTENCES = (
    "I think we should move the meeting to Thursday afternoon.",
    "The report is almost finished, but the numbers for March are still missing.",
    "Did anyone check whether the server was restarted last night?",
    "We sold more bicycles this spring than in the whole of last year.",
    "My train was late again, so I worked from the cafe near the station.",
    "The new kitchen opens next week and everyone is invited to lunch.",
    "Please send me the slides before noon so I can print them.",
    "Honestly, the garden needs more rain than it got this summer.",
    "The museum on the hill has a new exhibition about old maps.",
    "Our team won the football match on Saturday by two goals.",
    "I would rather take the bus than drive through the city centre.",
    "The library closes early on Fridays during the holidays.",
    "She said the concert was sold out within an hour.",
    "We need three more volunteers for the clean up on Sunday.",
    "The price of coffee beans has doubled since the winter.",
    "Can you explain again how the new booking system works?",
    "The bridge will be closed for repairs until the end of May.",
    "I read a good book about the history of the telephone.",
    "The children painted the fence blue and green yesterday.",
    "Let us agree on a budget before we talk about the design.",
    "My neighbour grows tomatoes, beans and strawberries on her balcony.",
    "The weather forecast says it will snow in the mountains tonight.",
    "We should hire someone who knows both accounting and software.",
    "The airport was so crowded that we nearly missed the flight.",
    "That restaurant serves the best soup I have ever tasted.",
    "Remember to lock the back door when you leave the office.",
    "The printer on the second floor is out of paper again.",
    "I agree with you, although the timing is not ideal.",
    "The doctor told him to walk for half an hour every day.",
    "Our customers want faster delivery and clearer invoices.",
)


@dataclass(frozen=True)
class Conversation:
    speakers: int
    audio: Path
    rttm: Path


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "transcriptor-bench" / "speakers"


def _speak(text: str, voice: tuple[str, int, int], folder: Path) -> np.ndarray:
    name, pitch, speed = voice
    out = folder / "turn.wav"
    subprocess.run(
        ["espeak-ng", "-v", name, "-p", str(pitch), "-s", str(speed), "-w", str(out), text],
        check=True,
        capture_output=True,
    )
    resampled = folder / "turn16k.wav"
    subprocess.run(
        ["sox", "-v", "0.9", str(out), "-r", str(RATE), "-c", "1", "-b", "16", str(resampled)],
        check=True,
        capture_output=True,
    )
    with wave.open(str(resampled), "rb") as file:
        data = np.frombuffer(file.readframes(file.getnframes()), dtype=np.int16)
    return data.astype(np.float32) / 32768.0


def _audible(samples: np.ndarray) -> tuple[int, int]:
    """First and last sample of the audible part (espeak pads its output with silence)."""
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return (int(loud[0]), int(loud[-1]) + 1) if len(loud) else (0, len(samples))


def build(speakers: int, seconds: float = 150.0, seed: int = 0, folder: Path | None = None) -> Conversation:
    """Build (or reuse) the conversation of `speakers` voices in `folder` (default: the
    cache); return its files."""
    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"dialog-{speakers}spk-{round(seconds)}s-seed{seed}"
    audio, rttm = folder / f"{stem}.wav", folder / f"{stem}.rttm"
    if audio.exists() and rttm.exists():
        return Conversation(speakers, audio, rttm)
    rng = random.Random(seed * 100 + speakers)
    pieces: list[np.ndarray] = []
    turns: list[tuple[float, float, int]] = []
    at = 0
    previous = -1
    order = list(range(speakers))  # everyone speaks once early, then anyone but the last
    with tempfile.TemporaryDirectory() as scratch:
        while at < seconds * RATE:
            who = order.pop(0) if order else rng.choice([s for s in range(speakers) if s != previous])
            text = " ".join(rng.sample(SENTENCES, rng.choice((1, 1, 2))))
            samples = _speak(text, VOICES[who], Path(scratch))
            low, high = _audible(samples)
            samples = samples[low:high][: 10 * RATE]  # a turn is at most 10 s
            pause = np.zeros(int(rng.uniform(0.3, 0.9) * RATE), dtype=np.float32)
            pieces += [pause, samples]
            at += len(pause)
            turns.append((at / RATE, len(samples) / RATE, who))
            at += len(samples)
            previous = who
    _write_wav(audio, np.concatenate(pieces))
    lines = [
        f"SPEAKER {stem} 1 {start:.3f} {length:.3f} <NA> <NA> spk{who} <NA> <NA>\n"
        for start, length, who in turns
    ]
    rttm.write_text("".join(lines))
    return Conversation(speakers, audio, rttm)


def _write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    partial = path.with_suffix(".partial.wav")
    with wave.open(str(partial), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(RATE)
        file.writeframes(pcm.tobytes())
    partial.replace(path)


def read_rttm(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, speaker) of each turn in an RTTM file."""
    turns = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "SPEAKER":
            start, length = float(parts[3]), float(parts[4])
            turns.append((start, start + length, parts[7]))
    return turns


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speakers", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--seconds", type=float, default=150.0)
    args = parser.parse_args(argv)
    for count in args.speakers:
        made = build(count, args.seconds)
        print(f"{count} speakers: {made.audio} ({len(read_rttm(made.rttm))} turns), {made.rttm}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
