"""Merging overlapping chunk results by word timestamps; pure functions, no model."""

from __future__ import annotations

from pipeline.audio import Chunk
from pipeline.merge import Merger, choose_cut
from pipeline.transcript import Segment, Word


def _segment(*words: tuple[str, float, float]) -> Segment:
    kept = tuple(Word(start, end, f" {text}") for text, start, end in words)
    return Segment(kept[0].start, kept[-1].end, "".join(w.text for w in kept).strip(), kept)


# "one two three four five six" spoken at one word a second, 0.6 s per word.
SPOKEN = [(name, float(i), i + 0.6) for i, name in enumerate("one two three four five six".split())]


def _text(segments: list[Segment]) -> str:
    return " ".join(s.text for s in segments)


def test_cut_falls_in_the_widest_pause() -> None:
    words = [Word(0.0, 1.0, "a"), Word(1.1, 2.0, "b"), Word(3.0, 4.0, "c")]
    assert choose_cut(words, 0.5, 3.5) == 2.5


def test_overlapping_chunks_keep_every_word_once() -> None:
    chunks = [Chunk(0, 0.0, 4.0), Chunk(1, 2.0, 6.0)]
    merger = Merger(chunks)
    # Both chunks heard "three" (2.0-2.6) and the edge chunk mangled its last word.
    merger.add(0, _segment(*SPOKEN[:3], ("fo", 3.0, 3.9)))
    merger.add(1, _segment(("three", 2.02, 2.58), *SPOKEN[3:]))
    merger.finish(1)
    assert merger.ready() == []  # chunk 0 is not finished: its tail is not final yet
    merger.finish(0)
    out = merger.ready()
    assert _text(out) == "one two three four five six"
    assert merger.complete


def test_segments_are_released_in_order_as_soon_as_final() -> None:
    chunks = [Chunk(0, 0.0, 4.0), Chunk(1, 2.0, 6.0)]
    merger = Merger(chunks)
    merger.add(0, _segment(*SPOKEN[:2]))  # ends at 1.6, before chunk 1 starts at 2.0
    assert _text(merger.ready()) == "one two"
    merger.add(1, _segment(*SPOKEN[2:]))
    merger.finish(1)
    assert merger.ready() == []  # waits for chunk 0
    merger.add(0, _segment(SPOKEN[2]))
    merger.finish(0)
    assert _text(merger.ready()) == "three four five six"
    starts = [s.start for s in merger.released]
    assert starts == sorted(starts)


def test_a_repeat_at_the_cut_is_dropped() -> None:
    chunks = [Chunk(0, 0.0, 4.0), Chunk(1, 2.0, 6.0)]
    merger = Merger(chunks)
    # No pause in the overlap: the cut lands inside "three", heard slightly apart.
    merger.add(0, _segment(("one", 0.0, 1.0), ("two", 1.0, 2.0), ("three", 2.0, 4.0)))
    merger.add(1, _segment(("three", 2.5, 3.9), ("four", 4.0, 5.0)))
    merger.finish(0)
    merger.finish(1)
    assert _text(merger.ready()) == "one two three four"


def test_leftovers_keep_finished_segments_of_later_chunks() -> None:
    chunks = [Chunk(0, 0.0, 4.0), Chunk(1, 2.0, 6.0), Chunk(2, 4.0, 8.0)]
    merger = Merger(chunks)
    merger.add(0, _segment(*SPOKEN[:2]))
    merger.ready()
    # Chunk 2 finished while chunk 0 and 1 are still running, then the run is stopped.
    merger.add(2, _segment(("five", 5.0, 5.6), ("six", 6.0, 6.6), ("seven", 7.0, 7.6)))
    merger.finish(2)
    assert merger.ready() == []
    assert _text(merger.leftovers()) == "five six seven"
