"""The live audio front end: 24 kHz pcm16 to 16 kHz float, and a voice activity gate.

Both run on every frame a session receives, speech or silence, so both are a few numpy
operations per 20 ms: the gate is what keeps a silent session under 5% of a core, since
nothing is decoded until it opens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_RATE = 24000
RATE = 16000
FRAME = 320  # 20 ms at 16 kHz: the gate's unit


def _lowpass(taps: int = 63, cutoff: float = 7600.0, rate: float = 48000.0) -> np.ndarray:
    """A Hann-windowed sinc, for 2× upsampled audio before keeping every third sample."""
    n = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff / rate * n) * np.hanning(taps)
    return (h / h.sum()).astype(np.float32)


class Resampler:
    """24 kHz -> 16 kHz (up 2, low-pass, down 3), streaming: frames of any size join up
    as if the audio had been resampled in one piece."""

    def __init__(self) -> None:
        self._h = _lowpass()
        self._tail = np.zeros(len(self._h) - 1, dtype=np.float32)
        self._produced = 0  # filtered samples so far, for the decimation phase

    def __call__(self, pcm: bytes) -> np.ndarray:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        up = np.zeros(2 * len(x), dtype=np.float32)
        up[::2] = 2.0 * x  # zero insertion halves the level; the 2 restores it
        buf = np.concatenate((self._tail, up))
        filtered = np.convolve(buf, self._h, mode="valid")
        self._tail = buf[len(buf) - len(self._tail) :]
        start = (-self._produced) % 3
        self._produced += len(filtered)
        return filtered[start::3].astype(np.float32)


@dataclass
class TurnDetection:
    """OpenAI's server_vad settings (threshold 0-1, times in ms); None means manual."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    @classmethod
    def from_dict(cls, data: dict[str, object] | None) -> TurnDetection | None:
        if data is None:
            return None
        made = cls()
        for name in ("threshold", "prefix_padding_ms", "silence_duration_ms"):
            value = data.get(name)
            if isinstance(value, int | float):
                setattr(made, name, type(getattr(made, name))(value))
        return made


class EnergyGate:
    """Says, frame by frame, whether a frame is voiced: louder than an absolute floor set
    by `threshold` and than the noise level it keeps tracking by 12 dB."""

    def __init__(self, threshold: float = 0.5) -> None:
        # threshold 0.5 puts the floor at -50 dBFS; 0 at -65, 1 at -35.
        self.floor_db = -50.0 + 30.0 * (min(1.0, max(0.0, threshold)) - 0.5)
        self.noise_db = -70.0

    def voiced(self, frame: np.ndarray) -> bool:
        power = float(np.dot(frame, frame)) / max(1, len(frame))
        level = 10.0 * np.log10(power + 1e-12)
        voiced = level > max(self.floor_db, self.noise_db + 12.0)
        if not voiced:
            # Follows the noise down fast and up slowly, so speech does not raise it.
            rate = 0.3 if level < self.noise_db else 0.02
            self.noise_db += rate * (level - self.noise_db)
        return voiced
