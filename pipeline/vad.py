"""faster-whisper's Silero VAD over audio that arrives in blocks, as a whole-file pass sees it.

Silero is causal: each 512-sample frame's speech probability depends on the frames before
it only through the LSTM state and the previous frame's last 64 samples. Carrying those
from one block to the next gives the very probabilities a whole-file pass computes
(tests/pipeline/test_windows.py checks it), and so the same speech segments, so the
pieces faster-whisper decodes, and the words, are those of a whole-file run. Frames are
counted from the start of the file, and only frames not yet seen are run.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

FRAME = 512
_CONTEXT = 64
# faster-whisper's get_speech_timestamps asks `get_vad_model()` for the model; while it
# runs here, that answers with the probabilities already computed (one caller at a time).
_swap = threading.Lock()


class _Computed:
    """Stands in for the VAD model inside get_speech_timestamps."""

    def __init__(self, probabilities: np.ndarray) -> None:
        self.probabilities = probabilities

    def __call__(self, padded: np.ndarray, *_: Any, **__: Any) -> np.ndarray:
        assert len(padded) // FRAME == len(self.probabilities), "frames out of step"
        return self.probabilities


class StreamVad:
    """Speech segments of a buffer that starts on a frame boundary of the file."""

    def __init__(self, options: Any) -> None:
        from faster_whisper.vad import get_vad_model

        self.session = get_vad_model().session
        self.options = options
        self.state = (np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32))
        self.context = np.zeros(_CONTEXT, np.float32)
        self.probabilities = np.zeros(0, np.float32)  # of the buffer's whole frames

    def _run(self, frames: np.ndarray, keep: bool) -> np.ndarray:
        """Probabilities of `frames` (n × 512) after those seen; with keep, they count as
        seen (the state moves on)."""
        context = np.concatenate([self.context[None, :], frames[:-1, -_CONTEXT:]], axis=0)
        out, h, c = self.session.run(
            None,
            {"input": np.concatenate([context, frames], axis=1), "h": self.state[0], "c": self.state[1]},
        )
        if keep:
            self.state, self.context = (h, c), frames[-1, -_CONTEXT:].copy()
        return np.asarray(out, np.float32).reshape(-1)

    def speech(self, buffer: np.ndarray) -> list[dict[str, int]]:
        """faster-whisper's speech segments of `buffer` (sample offsets into it); the
        buffer is the one of the last call with samples added at its end."""
        from faster_whisper import vad

        whole = len(buffer) // FRAME
        seen = len(self.probabilities)
        if whole > seen:
            frames = buffer[seen * FRAME : whole * FRAME].reshape(-1, FRAME)
            self.probabilities = np.concatenate([self.probabilities, self._run(frames, keep=True)])
        # The tail frame as the whole-file pass pads it: zeros to a full frame (a frame
        # of zeros if none is left over), its last 64 samples zeroed. Not kept.
        tail = np.zeros(FRAME, np.float32)
        rest = buffer[whole * FRAME :]
        tail[: len(rest)] = rest
        tail[-_CONTEXT:] = 0.0
        probabilities = np.concatenate([self.probabilities, self._run(tail[None, :], keep=False)])
        with _swap:
            original = vad.get_vad_model
            vad.get_vad_model = lambda: _Computed(probabilities)
            try:
                return list(vad.get_speech_timestamps(buffer, self.options))
            finally:
                vad.get_vad_model = original

    def advance(self, samples: np.ndarray) -> None:
        """Run whole frames that come before the buffer (a resumed run's skipped part)."""
        self._run(samples.reshape(-1, FRAME), keep=True)

    def drop(self, frames: int) -> None:
        """The buffer lost its first `frames` frames (a window was cut off)."""
        self.probabilities = self.probabilities[frames:]
