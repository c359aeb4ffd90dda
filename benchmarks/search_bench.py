"""Search: GET /api/search's query (Store.search_segments, FTS5) over a library of 1,000
finished jobs of 100 segments each, in a real database file.

The transcripts are made of words drawn from a 5,000-word vocabulary with Zipf-like
frequencies (a few words in most segments, most words rare), 12 words a segment, seeded so
every run builds the same library. Each query kind runs many times, the kinds interleaved
so noise hits them alike; the time is the Store call as the handler makes it (the reader
connection's thread hop included, HTTP not).
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import benchmarks.common  # noqa: F401  (puts the repo on sys.path)
from benchmarks.common import Row, median, p99, run_async, run_script
from server.store import Store

JOBS, SEGMENTS, WORDS_PER_SEGMENT = 1000, 100, 12
VOCABULARY = 5000
GOAL_MS = 50.0


def vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))))
    return sorted(words)


def document(rng: random.Random, words: list[str], weights: list[float]) -> dict[str, object]:
    segments = []
    for n in range(SEGMENTS):
        text = " ".join(rng.choices(words, weights, k=WORDS_PER_SEGMENT))
        segments.append({"start": n * 3.0, "end": n * 3.0 + 2.8, "text": text, "words": []})
    return {"language": "en", "duration": SEGMENTS * 3.0, "segments": segments}


async def build(store: Store, words: list[str]) -> None:
    rng = random.Random(26)
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    for i in range(JOBS):
        job = await store.create_job(
            filename=f"meeting-{i:04d}.wav", original_path=f"/nowhere/{i}.wav", duration_seconds=300.0,
            model="tiny.en", language="en", processes=1, threads=1, chunk_seconds=0.0, overlap_seconds=0.0,
        )  # fmt: skip
        await store.import_transcript(job["id"], document(rng, words, weights))


async def run_all(quick: bool) -> list[Row]:
    repeats = 20 if quick else 200
    words = vocabulary(random.Random(25))
    common, middling, rare = words[0], words[40], words[3000]
    queries = {
        "common word (in 3 of 4 segments)": common,
        "middling word": middling,
        "word in ~1,900 segments (the most still ranked)": words[70],
        "rare word": rare,
        "phrase of two words": f'"{common} {words[1]}"',
        "prefix": f"{middling[:3]}*",
        "two words, AND": f"{middling} {words[200]}",
    }
    timings: dict[str, list[float]] = {case: [] for case in queries}
    hits: dict[str, int] = {}
    orders: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        store = await Store.open(Path(folder) / "transcriptor.db")
        try:
            began = time.monotonic()
            await build(store, words)
            built = time.monotonic() - began
            for _ in range(repeats):
                for case, query in queries.items():
                    start = time.perf_counter()
                    found = await store.search_segments(query)
                    timings[case].append((time.perf_counter() - start) * 1000.0)
                    hits[case] = len(found["hits"])
                    orders[case] = found["order"]
        finally:
            await store.close()
    rows = []
    for case, values in timings.items():
        order = "best first" if orders[case] == "rank" else "newest first: too many matches to rank"
        note = f"query {queries[case]!r}: {hits[case]} hits (50 at most), {order}"
        note += f"; library built in {built:.0f} s"
        rows.append(
            Row("search", case, "Store.search_segments, 1,000 jobs × 100 segments (ms)", len(values),
                median(values), p99(values), f"p99 < {GOAL_MS:g} ms", p99(values) < GOAL_MS, note)
        )  # fmt: skip
    return rows


def rows(quick: bool = False) -> list[Row]:
    return list(run_async(lambda: run_all(quick)))


def main(argv: Sequence[str] | None = None) -> int:
    return run_script(rows, "search: FTS5 over 1,000 jobs of 100 segments", argv)


if __name__ == "__main__":
    sys.exit(main())
