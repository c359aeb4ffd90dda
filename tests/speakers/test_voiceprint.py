"""The voice-print encoder without torch, held to torch's own LSTM with the same weights.

torch is in the speakers extra (Resemblyzer depends on it), so the reference runs
wherever the extra is installed; the job itself never imports it.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.speakers import checkpoint
from pipeline.speakers.voiceprint import VoicePrint, mel_spectrogram, weights_path


def _torch_reference(mels: np.ndarray) -> np.ndarray:
    """Resemblyzer's VoiceEncoder forward pass in torch, as it writes it."""
    import torch
    from torch import nn

    state = torch.load(weights_path(), map_location="cpu", weights_only=True)["model_state"]
    lstm, linear = nn.LSTM(40, 256, 3, batch_first=True), nn.Linear(256, 256)
    lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
    linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
    with torch.inference_mode():
        _, (hidden, _) = lstm(torch.from_numpy(mels))
        raw = torch.relu(linear(hidden[-1]))
        return (raw / torch.norm(raw, dim=1, keepdim=True)).numpy()


def test_the_checkpoint_reads_as_torch_reads_it():
    import torch

    ours = checkpoint.load(weights_path(), "model_state")
    theirs = torch.load(weights_path(), map_location="cpu", weights_only=True)["model_state"]
    assert list(ours) == list(theirs)
    for name, tensor in theirs.items():
        assert ours[name].dtype == np.float32 and np.array_equal(ours[name], tensor.numpy()), name


@pytest.mark.parametrize("threads", [1, 2])
def test_voice_prints_match_torchs_lstm(threads: int):
    rng = np.random.default_rng(3)
    # Mel frames of speech-like noise at different loudness, 1.6 s windows and a short one.
    samples = (rng.standard_normal(16000 * 8) * np.repeat(rng.uniform(0.01, 0.3, 8), 16000)).astype(
        np.float32
    )
    mel = mel_spectrogram(samples)
    windows = np.stack([mel[i : i + 160] for i in range(0, len(mel) - 160, 40)])
    encoder = VoicePrint(threads)
    for batch in (windows, mel[None, :70]):
        got, expected = encoder(batch), _torch_reference(np.ascontiguousarray(batch))
        assert got.shape == expected.shape
        assert np.max(np.abs(got - expected)) < 1e-5
        assert np.min(np.sum(got * expected, axis=1)) > 0.99999


def test_a_job_never_imports_torch():
    script = (
        "import sys, numpy as np\n"
        "from pipeline.speakers import child, cluster\n"
        "from pipeline.speakers.embed import Encoder, speech_regions\n"
        "samples = np.zeros(16000 * 3, dtype=np.float32)\n"
        "encoder = Encoder(1)\n"
        "encoder.embed(samples, [(0.0, 3.0)], lambda share: None)\n"
        "speech_regions(samples)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_file_that_is_not_a_legacy_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not what we read")
    with pytest.raises(checkpoint.BadCheckpoint):
        checkpoint.load(bad)
