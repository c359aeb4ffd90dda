"""Decoding one live utterance: a short window, and the policy that makes deltas final.

Whisper pads every window to 30 s, so its encoder costs the same for 1 s of speech as for
30 s (0.5-0.9 s for tiny.en on one thread here). A live utterance is encoded as it is,
padded with silence only to MIN_WINDOW_SECONDS: 0.05-0.2 s. Without the padding the
decoder, seeing no end to the speech, loops ("and so my fellow and so my fellow ...");
measured on jfk.flac prefixes, 8 s of window with 2 s of silence after the speech gave
the offline text for every prefix from 1.5 s up.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np

from pipeline.messages import DecodeUtterance

SAMPLE_RATE = 16000
MIN_WINDOW_SECONDS = 8.0
TAIL_SECONDS = 2.0
# A live decode stops after this many tokens per second of speech (plus a few; timestamps count): tiny
# models repeat themselves on a cut-off word, and a runaway decode would cost seconds.
TOKENS_PER_SECOND = 7
TOKENS_EXTRA = 12


def window_features(model: Any, samples: np.ndarray) -> np.ndarray:
    """Log-mel features of the utterance padded with silence, not to 30 s."""
    length = max(len(samples) + int(TAIL_SECONDS * SAMPLE_RATE), int(MIN_WINDOW_SECONDS * SAMPLE_RATE))
    padded = np.zeros(length, dtype=np.float32)
    padded[: len(samples)] = samples
    features = model.feature_extractor(padded)
    # The encoder halves the frame count with a stride-2 convolution: keep it even.
    return features[:, : features.shape[1] // 2 * 2]


def decode_window(model: Any, task: DecodeUtterance) -> tuple[str, float]:
    """(text, seconds it took) of one utterance, greedy unless beam_size > 1."""
    from faster_whisper.tokenizer import Tokenizer

    began = time.monotonic()
    multilingual = model.model.is_multilingual
    language = (task.language if multilingual else None) or "en"
    tokenizer = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe", language=language)
    encoded = model.encode(window_features(model, task.samples))
    # With timestamps: the model then says where each piece of text starts, and text it
    # places in the silence padded after the speech (a repeat of it) is dropped.
    prompt = [*tokenizer.sot_sequence]
    if task.prompt:
        previous = tokenizer.encode(" " + task.prompt.strip())[-100:]
        prompt = [tokenizer.sot_prev, *previous, *prompt]
    seconds = len(task.samples) / SAMPLE_RATE
    result = model.model.generate(
        encoded,
        [prompt],
        beam_size=task.beam_size,
        max_length=len(prompt) + int(TOKENS_EXTRA + seconds * TOKENS_PER_SECOND),
        suppress_blank=True,
        suppress_tokens=[-1],
    )
    tokens = spoken_tokens(result[0].sequences_ids[0], tokenizer, seconds)
    return tokenizer.decode(tokens).strip(), time.monotonic() - began


def spoken_tokens(tokens: list[int], tokenizer: Any, seconds: float) -> list[int]:
    """The text tokens of the pieces that start before the speech ends."""
    first_timestamp = tokenizer.timestamp_begin
    kept: list[int] = []
    for token in tokens:
        if token == tokenizer.eot:
            break
        if token >= first_timestamp:
            if (token - first_timestamp) * 0.02 >= seconds - 0.1 and kept:
                break  # a piece that starts in the padding after the speech
            continue
        kept.append(token)
    return kept


_WORD_EDGE = re.compile(r"^\W+|\W+$")


def _norm(word: str) -> str:
    return _WORD_EDGE.sub("", word).lower()


class LocalAgreement:
    """LocalAgreement-2 (whisper_streaming): a word is sent once two successive decodes
    of the growing utterance agree on it and on everything before it. Sent words are
    never taken back, whatever later decodes say."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self._previous: list[str] = []

    def update(self, text: str) -> str:
        """The delta to send after a decode that read `text` ('' if nothing new)."""
        current = text.split()
        agreed = 0
        for before, now in zip(self._previous, current, strict=False):
            if _norm(before) != _norm(now):
                break
            agreed += 1
        self._previous = current
        if agreed <= len(self.sent):
            return ""
        # Only words past what was sent: a decode that now disagrees with sent text
        # cannot change it, and its agreed words are counted from the same position.
        new = current[len(self.sent) : agreed]
        delta = (" " if self.sent else "") + " ".join(new)
        self.sent += new
        return delta

    @property
    def text(self) -> str:
        return " ".join(self.sent)
