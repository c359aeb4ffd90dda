"""Voice embeddings of short windows of speech: Silero VAD finds the speech, Resemblyzer
turns each window of it into a 256-number voice print (voiceprint.py).

Why these models: both ship their weights inside a PyPI wheel (faster-whisper carries
Silero VAD as ONNX, resemblyzer its GE2E speaker encoder), so nothing is fetched at run
time and no token is asked for. Resemblyzer's encoder is a 3-layer LSTM over 40 mel
bands, cheap on a CPU (about 1-2 % of real time on 2 cores).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
FRAME_SECONDS = 0.01  # Resemblyzer's mel frames are 10 ms apart
WINDOW_FRAMES = 160  # 1.6 s, the window Resemblyzer was trained on
HOP_FRAMES = 80  # a window every 0.8 s: half the work of 0.4 s, the same DER on the bench
MIN_FRAMES = 50  # speech shorter than 0.5 s gives no reliable voice print
BATCH = 64


@dataclass(frozen=True, slots=True)
class Window:
    start: float
    end: float
    region: int  # which stretch of speech (VAD region) it lies in


def speech_regions(samples: np.ndarray) -> list[tuple[float, float]]:
    """Stretches of speech in seconds, split at pauses of 0.3 s or more.

    Short pauses split: a change of speaker nearly always sits in one, and a window
    that never crosses a pause holds one voice.
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=300, speech_pad_ms=30, min_speech_duration_ms=100)
    stamps = get_speech_timestamps(samples, options, sampling_rate=SAMPLE_RATE)
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


def windows_of(regions: list[tuple[float, float]]) -> list[tuple[Window, int, int]]:
    """The windows of each region as (window, first frame, frame count) in region frames."""
    planned = []
    for index, (start, end) in enumerate(regions):
        frames = int((end - start) / FRAME_SECONDS)
        if frames < MIN_FRAMES:
            continue
        if frames <= WINDOW_FRAMES:
            planned.append((Window(start, end, index), 0, frames))
            continue
        last = frames - WINDOW_FRAMES
        offsets = list(range(0, last + 1, HOP_FRAMES))
        if offsets[-1] != last:
            offsets.append(last)  # the region's tail gets a window too
        for first in offsets:
            begin = start + first * FRAME_SECONDS
            planned.append(
                (Window(begin, begin + WINDOW_FRAMES * FRAME_SECONDS, index), first, WINDOW_FRAMES)
            )
    return planned


class Encoder:
    """Voice prints of the windows of speech."""

    def __init__(self, threads: int) -> None:
        from pipeline.speakers.voiceprint import VoicePrint

        self.model = VoicePrint(threads)

    def use_threads(self, threads: int) -> None:
        self.model.torch.set_num_threads(max(1, threads))

    def embed(
        self, samples: np.ndarray, regions: list[tuple[float, float]], progress: Callable[[float], None]
    ) -> tuple[list[Window], np.ndarray]:
        """One L2-normalised print per window, in time order; `progress` gets the share done."""
        from pipeline.speakers.voiceprint import mel_spectrogram, normalize_volume

        samples = normalize_volume(samples.astype(np.float32))
        planned = windows_of(regions)
        mel: np.ndarray | None = None
        mel_region = -1
        windows: list[Window] = []
        vectors: list[np.ndarray] = []
        # Same-length windows go as one batch; a short region's one window goes alone.
        pending: dict[int, list[tuple[Window, np.ndarray]]] = {}

        def flush(length: int) -> None:
            group = pending.pop(length, [])
            if group:
                vectors.extend(self.model(np.stack([m for _, m in group])))
                windows.extend(w for w, _ in group)

        for done, (window, first, count) in enumerate(planned, start=1):
            if window.region != mel_region:  # regions come in order: one mel at a time
                start, end = regions[window.region]
                mel = mel_spectrogram(samples[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)])
                mel_region = window.region
            assert mel is not None
            piece = mel[first : first + count]
            if len(piece) < MIN_FRAMES:
                continue
            pending.setdefault(len(piece), []).append((window, piece))
            if len(pending[len(piece)]) >= BATCH:
                flush(len(piece))
                progress(done / len(planned))
        for length in list(pending):
            flush(length)
        progress(1.0)
        if not vectors:
            return [], np.zeros((0, 256), dtype=np.float32)
        order = np.argsort([w.start for w in windows], kind="stable")
        return [windows[i] for i in order], np.stack(vectors)[order]
