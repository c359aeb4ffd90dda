"""Resemblyzer's GE2E speaker encoder, with the weights read from its installed wheel.

The network (3-layer LSTM over 40 mel bands, a linear layer, ReLU, L2 norm) is written
out here in numpy, the weights read without torch (checkpoint.py), instead of imported:
`import resemblyzer` imports webrtcvad, whose module needs pkg_resources (gone from
setuptools 81), librosa, which takes ~2 s to import, and torch, another 1.5 s. The
mel spectrogram is librosa's (hann window, 25 ms frames every 10 ms, Slaney mel bands,
power 2), computed with numpy; a test holds it to librosa's output.
"""

from __future__ import annotations

import importlib.metadata
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.speakers import checkpoint

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
HIDDEN = 256
LAYERS = 3
_BLOCK = 32  # LSTM steps whose input products are computed together
TARGET_DBFS = -30.0


class MissingModel(RuntimeError):
    pass


def weights_path() -> Path:
    """pretrained.pt inside the installed resemblyzer distribution (not imported)."""
    try:
        dist = importlib.metadata.distribution("resemblyzer")
    except importlib.metadata.PackageNotFoundError:
        raise MissingModel("resemblyzer is not installed") from None
    path = Path(str(dist.locate_file("resemblyzer/pretrained.pt")))
    if not path.is_file():
        raise MissingModel(f"resemblyzer's weights are missing: {path}")
    return path


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney's scale: linear below 1 kHz, logarithmic above (librosa's default).
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log_part = hz >= 1000.0
    return np.where(log_part, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * (200.0 / 3)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), hz)


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=40): Slaney-normalised triangles."""
    bins = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(SAMPLE_RATE / 2)), N_MELS + 2)
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def mel_spectrogram(samples: np.ndarray) -> np.ndarray:
    """(frames, 40) power mel spectrogram, frames centred every 10 ms."""
    padded = np.pad(samples.astype(np.float32), N_FFT // 2)
    count = 1 + (len(padded) - N_FFT) // HOP
    if count <= 0:
        return np.zeros((0, N_MELS), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:count]
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic hann, as librosa
    spectrum = np.fft.rfft(frames * window, axis=1)  # complex64 from float32
    # re² + im²: np.abs (a hypot per bin, then squared) took 8× as long as the rest.
    power = np.square(spectrum.real)
    power += np.square(spectrum.imag)
    return (power @ mel_filters().T).astype(np.float32)


def normalize_volume(samples: np.ndarray) -> np.ndarray:
    """Raise quiet audio to -30 dBFS (never lower it), as Resemblyzer's preprocessing does."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    if rms <= 0:
        return samples
    change = TARGET_DBFS - 20 * np.log10(rms)
    return samples if change < 0 else (samples * 10 ** (change / 20)).astype(np.float32)


class VoicePrint:
    """The encoder: mel frames (batch, frames, 40) -> L2-normalised 256-d prints.

    The LSTM in numpy, batched over every window: torch is not imported at job time (its
    import alone cost about 1.5 s of CPU, as much as the LSTM on 150 s of audio, and 300 MB).
    A test holds it to torch's nn.LSTM with the same weights. Matrix products run on one
    BLAS thread (stage.start); more threads take a share of the windows each.
    """

    def __init__(self, threads: int) -> None:
        state = checkpoint.load(weights_path(), "model_state")
        # PyTorch's gates come as i, f, g, o; as i, f, o, g one sigmoid covers three.
        order = np.r_[0 : 2 * HIDDEN, 3 * HIDDEN : 4 * HIDDEN, 2 * HIDDEN : 3 * HIDDEN]
        self.layers = [
            (
                np.ascontiguousarray(state[f"lstm.weight_ih_l{k}"][order].T),
                np.ascontiguousarray(state[f"lstm.weight_hh_l{k}"][order].T),
                (state[f"lstm.bias_ih_l{k}"] + state[f"lstm.bias_hh_l{k}"])[order],
            )
            for k in range(LAYERS)
        ]
        self.linear = (np.ascontiguousarray(state["linear.weight"].T), state["linear.bias"])
        self.threads = max(1, threads)

    def use_threads(self, threads: int) -> None:
        self.threads = max(1, threads)

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(mels, dtype=np.float32).transpose(1, 0, 2))  # time first
        parts = min(self.threads, max(1, x.shape[1] // 8))
        if parts == 1:
            last = self._lstm(x)
        else:
            shares = np.array_split(np.arange(x.shape[1]), parts)
            with ThreadPoolExecutor(parts, thread_name_prefix="voiceprint") as pool:
                last = np.concatenate(list(pool.map(lambda i: self._lstm(x[:, i]), shares)))
        raw = np.maximum(last @ self.linear[0] + self.linear[1], 0.0)
        return raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)

    def _lstm(self, x: np.ndarray) -> np.ndarray:
        """The last layer's final hidden state of (frames, batch, 40) input."""
        steps, batch, _ = x.shape
        h = np.zeros((batch, HIDDEN), dtype=np.float32)
        for number, (w_in, w_hidden, bias) in enumerate(self.layers):
            outputs = np.empty((steps, batch, HIDDEN), dtype=np.float32) if number < LAYERS - 1 else None
            h = np.zeros((batch, HIDDEN), dtype=np.float32)
            c = np.zeros((batch, HIDDEN), dtype=np.float32)
            gates = np.empty((batch, 4 * HIDDEN), dtype=np.float32)
            scratch = np.empty((batch, HIDDEN), dtype=np.float32)
            sigmoid, cell = gates[:, : 3 * HIDDEN], gates[:, 3 * HIDDEN :]
            for step in range(steps):
                if step % _BLOCK == 0:
                    # The inputs' share of the gates, a block of steps at a time: one large
                    # product, without holding every step's gates (80 MB for 128 windows).
                    block = np.ascontiguousarray(x[step : step + _BLOCK])
                    ahead = (block.reshape(-1, block.shape[2]) @ w_in).reshape(len(block), batch, -1)
                    ahead += bias
                np.matmul(h, w_hidden, out=gates)
                gates += ahead[step % _BLOCK]
                # sigmoid(x) = (tanh(x / 2) + 1) / 2: one ufunc pass instead of exp and divide
                sigmoid *= 0.5
                np.tanh(sigmoid, out=sigmoid)
                sigmoid *= 0.5
                sigmoid += 0.5
                np.tanh(cell, out=cell)
                c *= gates[:, HIDDEN : 2 * HIDDEN]
                np.multiply(gates[:, :HIDDEN], cell, out=scratch)
                c += scratch
                np.tanh(c, out=scratch)
                np.multiply(gates[:, 2 * HIDDEN : 3 * HIDDEN], scratch, out=h)
                if outputs is not None:
                    outputs[step] = h
            if outputs is not None:
                x = outputs
        return h
