"""Diarization error rate, frame by frame, as the standard defines it.

DER = (missed speech + false alarm + confusion) / reference speech, after mapping the
hypothesis labels one-to-one onto the reference speakers so that the most time agrees
(Hungarian assignment), with no scoring within `collar` seconds of each reference turn
boundary. Turns here never overlap (one voice at a time), which keeps it to one label
per frame on each side.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FRAME = 0.01  # seconds
Turn = tuple[float, float, str]  # start, end, speaker


def _frames(turns: Sequence[Turn], length: int, labels: dict[str, int]) -> np.ndarray:
    track = np.full(length, -1, dtype=int)
    for start, end, who in turns:
        track[round(start / FRAME) : round(end / FRAME)] = labels.setdefault(who, len(labels))
    return track


def der(reference: Sequence[Turn], hypothesis: Sequence[Turn], collar: float = 0.25) -> float:
    """The diarization error rate (0-1) of `hypothesis` against `reference`."""
    from scipy.optimize import linear_sum_assignment

    end = max([t[1] for t in reference] + [t[1] for t in hypothesis] + [0.0])
    length = int(np.ceil(end / FRAME)) + 1
    ref = _frames(reference, length, {})
    hyp = _frames(hypothesis, length, {})
    scored = np.ones(length, dtype=bool)
    pad = round(collar / FRAME)
    for start, stop, _ in reference:
        for edge in (start, stop):
            at = round(edge / FRAME)
            scored[max(0, at - pad) : at + pad] = False
    ref, hyp = ref[scored], hyp[scored]
    speech = int(np.sum(ref >= 0))
    if speech == 0:
        return 0.0
    missed = int(np.sum((ref >= 0) & (hyp < 0)))
    false_alarm = int(np.sum((ref < 0) & (hyp >= 0)))
    both = (ref >= 0) & (hyp >= 0)
    overlap = np.zeros((ref.max() + 1, max(hyp.max() + 1, 1)), dtype=int)
    np.add.at(overlap, (ref[both], hyp[both]), 1)
    rows, cols = linear_sum_assignment(-overlap)
    confusion = int(np.sum(both)) - int(overlap[rows, cols].sum())
    return (missed + false_alarm + confusion) / speech


def word_turns(segments: Sequence[dict[str, object]]) -> list[Turn]:
    """Hypothesis turns from transcript.json: runs of words with one speaker, each run
    from its first word's start to its last word's end."""
    turns: list[Turn] = []
    for segment in segments:
        for word in segment.get("words", []):  # type: ignore[attr-defined]
            start, end, who = float(word["start"]), float(word["end"]), str(word.get("speaker", "?"))
            if turns and turns[-1][2] == who:
                turns[-1] = (turns[-1][0], end, who)
            else:
                turns.append((start, end, who))
    return turns
