"""Join the results of overlapping chunks by word timestamps, as they arrive.

Neighbouring chunks k and k+1 both transcribe their overlap. When chunk k is finished we
choose a cut inside the overlap, at the widest pause between chunk k's words away from
both chunk edges (words at an edge are the ones a chunk gets wrong). Chunk k keeps the
words whose middle is before the cut, chunk k+1 those at or after it. A pause of the
left chunk rarely holds a word of the right one, so no word is lost or doubled; if the
two chunks still both keep the word at the cut, the repeat is dropped.

Segments come out in time order as soon as they are final: a segment of the earliest
unfinished chunk is final when it ends before the next chunk starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pipeline.audio import Chunk
from pipeline.transcript import Segment, Word

# The cut keeps this share of the overlap away from each chunk edge.
_EDGE_MARGIN = 0.25


def normalise(word: str) -> str:
    return re.sub(r"[^\w']+", "", word.lower())


def choose_cut(words: Sequence[Word], low: float, high: float) -> float:
    """The middle of the widest stretch of [low, high] that no word covers."""
    if high <= low:
        return (low + high) / 2
    best_start, best_length = (low + high) / 2, -1.0
    cursor = low
    for word in sorted(words, key=lambda w: w.start):
        if word.end <= low or word.start >= high:
            continue
        if word.start - cursor > best_length:
            best_start, best_length = cursor, word.start - cursor
        cursor = max(cursor, word.end)
    if high - cursor > best_length:
        best_start, best_length = cursor, high - cursor
    if best_length <= 0:
        return (low + high) / 2
    return best_start + best_length / 2


def _trim(segment: Segment, low: float, high: float) -> Segment | None:
    """The part of `segment` whose words' middles lie in [low, high), or None."""
    if not segment.words:
        middle = (segment.start + segment.end) / 2
        return segment if low <= middle < high else None
    kept = tuple(w for w in segment.words if low <= w.middle < high)
    if len(kept) == len(segment.words):
        return segment
    if not kept:
        return None
    text = "".join(w.text for w in kept).strip()
    return Segment(kept[0].start, kept[-1].end, text, kept)


class Merger:
    """Collects per-chunk segments and releases merged, final segments in time order."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self._chunks = list(chunks)
        self._pending: list[list[Segment]] = [[] for _ in self._chunks]
        self._done = [False] * len(self._chunks)
        self._cuts: list[float] = [math.inf] * len(self._chunks)
        self._next = 0  # the earliest chunk not yet fully released
        self._last_word: Word | None = None
        self.released: list[Segment] = []

    def add(self, chunk: int, segment: Segment) -> None:
        """A segment of `chunk`, with absolute times; a chunk's segments come in order."""
        self._pending[chunk].append(segment)

    def finish(self, chunk: int) -> None:
        self._done[chunk] = True
        if chunk + 1 < len(self._chunks):
            low = self._chunks[chunk + 1].start
            high = self._chunks[chunk].end
            margin = (high - low) * _EDGE_MARGIN
            words = [w for s in self._pending[chunk] for w in s.words]
            self._cuts[chunk] = choose_cut(words, low + margin, high - margin)

    @property
    def complete(self) -> bool:
        return self._next >= len(self._chunks)

    def ready(self) -> list[Segment]:
        """Segments that just became final, in time order."""
        out: list[Segment] = []
        while self._next < len(self._chunks):
            k = self._next
            low = self._cuts[k - 1] if k > 0 else -math.inf
            if self._done[k]:
                high = self._cuts[k]
                safe = math.inf
            else:
                high = math.inf
                has_next = k + 1 < len(self._chunks)
                safe = self._chunks[k + 1].start if has_next else math.inf
            pending = self._pending[k]
            while pending and pending[0].end <= safe:
                trimmed = _trim(pending.pop(0), low, high)
                if trimmed is not None:
                    trimmed = self._drop_repeat(trimmed)
                if trimmed is not None:
                    out.append(trimmed)
                    if trimmed.words:
                        self._last_word = trimmed.words[-1]
            if not self._done[k] or pending:
                break
            self._next += 1
        self.released.extend(out)
        return out

    def _drop_repeat(self, segment: Segment) -> Segment | None:
        # Both chunks kept the word at the cut: same word, overlapping in time.
        last = self._last_word
        if last is None or not segment.words:
            return segment
        first = segment.words[0]
        if normalise(first.text) != normalise(last.text) or first.start >= last.end:
            return segment
        rest = segment.words[1:]
        if not rest:
            return None
        return Segment(rest[0].start, segment.end, "".join(w.text for w in rest).strip(), rest)
