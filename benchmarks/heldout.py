"""Held-out speech for the warm-start goals: made at bench time with espeak-ng, never
committed, and never the audio the pipeline's defaults were tuned on (jfk.flac).

Sentences are Harvard sentences (IEEE 1969, public domain), spoken by several espeak-ng
English voices at a few speeds, so the model meets more than one voice.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "Large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.",
    "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.",
    "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
    "The young girl gave no clear response.",
    "The meal was cooked before the bell rang.",
    "What joy there is in living.",
)
VOICES = (("en-us", 160), ("en-gb", 150), ("en-us", 135), ("en-gb-x-rp", 170))
RATE = 16_000
GAP_SECONDS = 0.6


def available() -> bool:
    return shutil.which("espeak-ng") is not None


def _say(text: str, voice: str, speed: int, path: Path) -> np.ndarray:
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True
    )
    from pipeline.audio import decode

    return decode(path)


def _write(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def short_clips(directory: Path, count: int = 12) -> list[tuple[Path, str]]:
    """`count` clips of 5–14 s, each a few sentences in one voice; (path, reference)."""
    clips = []
    n = 0
    for number in range(count):
        voice, speed = VOICES[number % len(VOICES)]
        wanted = 2 + number % 4  # 2–5 sentences: about 5 to 14 s
        text = " ".join(SENTENCES[(n + i) % len(SENTENCES)] for i in range(wanted))
        n += wanted
        samples = _say(text, voice, speed, directory / f"raw-{number}.wav")
        seconds = len(samples) / RATE
        if not 5.0 <= seconds <= 14.0:
            raise RuntimeError(f"clip {number} is {seconds:.1f} s, outside 5–14 s")
        clips.append((_write(directory / f"clip-{number:02d}.wav", samples), text))
    return clips


def long_file(directory: Path, minutes: float = 5.0) -> tuple[Path, str]:
    """At least `minutes` of speech: every sentence in every voice, in turn; (path, reference)."""
    gap = np.zeros(int(GAP_SECONDS * RATE), np.float32)
    pieces: list[np.ndarray] = []
    spoken: list[str] = []
    total = 0
    rounds = 0
    while total < minutes * 60 * RATE:
        voice, speed = VOICES[rounds % len(VOICES)]
        for start in range(0, len(SENTENCES), 5):
            text = " ".join(SENTENCES[start : start + 5])
            samples = _say(text, voice, speed, directory / "raw-long.wav")
            pieces += [samples, gap]
            spoken.append(text)
            total += len(samples) + len(gap)
            if total >= minutes * 60 * RATE:
                break
        rounds += 1
    path = _write(directory / f"heldout-{minutes:g}min.wav", np.concatenate(pieces))
    return path, " ".join(spoken)
