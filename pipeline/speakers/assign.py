"""Put the voice groups on the transcript: a label per word, segments split where the
speaker changes, labels renamed A, B, ... in order of first appearance."""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import replace

from pipeline.speakers.embed import Window
from pipeline.transcript import Segment, Word


def label_at(windows: Sequence[Window], groups: Sequence[int], start: float, end: float) -> int | None:
    """The group most windows overlapping [start, end] belong to, or the nearest window's."""
    if not windows:
        return None
    votes: dict[int, float] = {}
    for window, group in zip(windows, groups, strict=True):
        overlap = min(end, window.end) - max(start, window.start)
        if overlap > 0:
            votes[group] = votes.get(group, 0.0) + overlap
    if votes:
        return max(votes, key=lambda g: votes[g])
    middle = (start + end) / 2
    nearest = min(range(len(windows)), key=lambda i: abs((windows[i].start + windows[i].end) / 2 - middle))
    return groups[nearest]


def letter(index: int) -> str:
    letters = string.ascii_uppercase
    return letters[index] if index < len(letters) else f"S{index + 1}"


def _split(segment: Segment, labels: list[int]) -> list[tuple[Segment, int]]:
    """The segment cut into runs of words with one label each."""
    runs: list[tuple[list[Word], int]] = []
    for word, label in zip(segment.words, labels, strict=True):
        if runs and runs[-1][1] == label:
            runs[-1][0].append(word)
        else:
            runs.append(([word], label))
    if len(runs) == 1:
        return [(segment, runs[0][1])]
    pieces = []
    for words, label in runs:
        text = "".join(w.text for w in words)
        pieces.append((Segment(words[0].start, words[-1].end, text, tuple(words)), label))
    return pieces


def label_segments(
    segments: Sequence[Segment], windows: Sequence[Window], groups: Sequence[int]
) -> tuple[list[Segment], int]:
    """Segments with `speaker` on each segment and word; returns them and the count found."""
    labelled: list[tuple[Segment, int]] = []
    for segment in segments:
        if segment.words:
            labels = [label_at(windows, groups, w.start, w.end) for w in segment.words]
            if None in labels:
                return list(segments), 0
            labelled += _split(segment, [int(x) for x in labels if x is not None])
        else:
            label = label_at(windows, groups, segment.start, segment.end)
            if label is None:
                return list(segments), 0
            labelled.append((segment, label))
    names: dict[int, str] = {}
    out = []
    for segment, group in labelled:
        name = names.setdefault(group, letter(len(names)))
        words = tuple(replace(w, speaker=name) for w in segment.words)
        out.append(replace(segment, words=words, speaker=name))
    return out, len(names)
