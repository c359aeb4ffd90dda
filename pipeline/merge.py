"""Join the results of overlapping chunks by word timestamps, as they arrive.

Neighbouring chunks k and k+1 both transcribe their overlap, and each is least reliable
near its own edge (Whisper drops or garbles a sentence cut off by the chunk end). Once
both have covered the overlap we align their words there (same word, close in time) and
switch from chunk k to chunk k+1 at the matched word nearest the middle of the overlap:
chunk k keeps the words up to and including it, chunk k+1 the words after it. Without a
match we cut at the widest pause that neither chunk puts a word in. A word both chunks
still keep at the switch (same word, overlapping in time) is dropped once.

Segments come out in time order as soon as they are final: a segment of the earliest
unfinished chunk is final when it ends before the next chunk starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pipeline.audio import Chunk
from pipeline.transcript import Segment, Word

# The fallback cut keeps this share of the overlap away from each chunk edge.
_EDGE_MARGIN = 0.25
# Two chunks' readings of one word: same text, middles at most this far apart.
_SAME_WORD_SECONDS = 1.0


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


def _matches(left: Sequence[Word], right: Sequence[Word]) -> list[tuple[Word, Word]]:
    """The longest common run of the same words in both, in order (an LCS)."""
    n, m = len(left), len(right)
    table = [[0] * (m + 1) for _ in range(n + 1)]

    def same(a: Word, b: Word) -> bool:
        return normalise(a.text) == normalise(b.text) and abs(a.middle - b.middle) <= (
            _SAME_WORD_SECONDS
        )

    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            if same(left[i], right[j]):
                table[i][j] = table[i + 1][j + 1] + 1
            else:
                table[i][j] = max(table[i + 1][j], table[i][j + 1])
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if same(left[i], right[j]) and table[i][j] == table[i + 1][j + 1] + 1:
            pairs.append((left[i], right[j]))
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def switch_point(left: Sequence[Word], right: Sequence[Word], low: float, high: float) -> tuple[
    float, float
]:
    """Where to switch from the left chunk to the right one in their overlap [low, high].

    Returns (a, b): the left chunk keeps words whose middle is <= a, the right chunk
    words whose middle is > b.
    """
    in_left = [w for w in left if low <= w.middle <= high]
    in_right = [w for w in right if low <= w.middle <= high]
    pairs = _matches(in_left, in_right)
    if pairs:
        centre = (low + high) / 2
        a, b = min(pairs, key=lambda p: abs((p[0].middle + p[1].middle) / 2 - centre))
        return a.middle, b.middle
    margin = (high - low) * _EDGE_MARGIN
    cut = choose_cut([*in_left, *in_right], low + margin, high - margin)
    return cut, cut


def _trim(segment: Segment, low: float, high: float) -> Segment | None:
    """The part of `segment` whose words' middles lie in (low, high], or None."""
    if not segment.words:
        middle = (segment.start + segment.end) / 2
        return segment if low < middle <= high else None
    kept = tuple(w for w in segment.words if low < w.middle <= high)
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
        self._segments: list[list[Segment]] = [[] for _ in self._chunks]
        self._released_from: list[int] = [0] * len(self._chunks)
        self._done = [False] * len(self._chunks)
        # Boundary k, between chunk k and k+1: (a, b) from switch_point, once known.
        self._switch: list[tuple[float, float] | None] = [None] * len(self._chunks)
        self._next = 0  # the earliest chunk not yet fully released
        self._last_word: Word | None = None
        self.released: list[Segment] = []

    def add(self, chunk: int, segment: Segment) -> None:
        """A segment of `chunk`, with absolute times; a chunk's segments come in order."""
        self._segments[chunk].append(segment)

    def finish(self, chunk: int) -> None:
        self._done[chunk] = True

    @property
    def complete(self) -> bool:
        return self._next >= len(self._chunks)

    def _covered(self, k: int, until: float) -> bool:
        segments = self._segments[k]
        return self._done[k] or bool(segments and segments[-1].end >= until)

    def _boundary(self, k: int) -> tuple[float, float] | None:
        """The switch between chunk k and k+1, computed once both cover the overlap."""
        if k + 1 >= len(self._chunks):
            return (math.inf, math.inf)
        if self._switch[k] is None and self._done[k]:
            low, high = self._chunks[k + 1].start, self._chunks[k].end
            if self._covered(k + 1, high):
                left = [w for s in self._segments[k] for w in s.words]
                right = [w for s in self._segments[k + 1] for w in s.words]
                self._switch[k] = switch_point(left, right, low, high)
        return self._switch[k]

    def ready(self) -> list[Segment]:
        """Segments that just became final, in time order."""
        out: list[Segment] = []
        while self._next < len(self._chunks):
            k = self._next
            previous = self._switch[k - 1] if k > 0 else None
            low = previous[1] if previous else -math.inf
            switch = self._boundary(k)
            if switch is not None:
                high, safe = switch[0], math.inf
            else:
                high = math.inf
                last = k + 1 >= len(self._chunks)
                safe = math.inf if last else self._chunks[k + 1].start
            segments = self._segments[k]
            while self._released_from[k] < len(segments):
                segment = segments[self._released_from[k]]
                if segment.end > safe:
                    break
                self._released_from[k] += 1
                trimmed = _trim(segment, low, high)
                if trimmed is not None:
                    trimmed = self._drop_repeat(trimmed)
                if trimmed is not None:
                    out.append(trimmed)
                    if trimmed.words:
                        self._last_word = trimmed.words[-1]
            finished = self._done[k] and switch is not None
            if not finished or self._released_from[k] < len(segments):
                break
            self._next += 1
        self.released.extend(out)
        return out

    def leftovers(self) -> list[Segment]:
        """Finished segments not yet released, for partial output when a run is stopped.

        Where a switch point is not known yet, the middle of the overlap stands in; the
        audio of chunks nobody finished is simply missing.
        """
        out: list[Segment] = []
        for k in range(self._next, len(self._chunks)):
            low, high = -math.inf, math.inf
            if k > 0:
                known = self._switch[k - 1]
                middle = (self._chunks[k].start + self._chunks[k - 1].end) / 2
                low = known[1] if known else middle
            if k + 1 < len(self._chunks):
                known = self._switch[k]
                middle = (self._chunks[k + 1].start + self._chunks[k].end) / 2
                high = known[0] if known else middle
            for segment in self._segments[k][self._released_from[k] :]:
                trimmed = _trim(segment, low, high)
                if trimmed is not None:
                    out.append(trimmed)
        return out

    def _drop_repeat(self, segment: Segment) -> Segment | None:
        # Both chunks kept the word at the switch: same word, overlapping in time.
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
