"""Batched decoding spread over the model's replicas, so every core decodes at once.

faster-whisper's `BatchedInferencePipeline` decodes its batches one after another: on a
5-minute file that is a full batch of 8 windows, then a batch of 3, with the cores half
idle through the small one and through the serial steps inside each. CTranslate2 can
hold several replicas of a model (`num_workers`) that share the weights and decode at the
same time from separate Python threads. `ReplicatedPipeline` cuts the same windows into
batches of even size, a multiple of the replica count, and decodes them side by side;
the windows, the options and so the words are the same. Word timestamps are the
exception: their alignment carries state from one batch to the next, so with them the
batches run in order as before. Measured in
benchmarks/PIPELINE_NOTES.md ("Replicas").
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from faster_whisper import BatchedInferencePipeline
from faster_whisper.transcribe import Segment, Word

# The one method overridden; if a faster-whisper release renames it, decoding falls back
# to the plain pipeline rather than breaking (see `make_pipeline`).
_GENERATOR = "_batched_segments_generator"


def even_batches(count: int, batch_size: int, replicas: int) -> list[range]:
    """Split `count` windows into contiguous batches of at most `batch_size`, as even as
    possible, their number a multiple of `replicas` (while windows last)."""
    if count <= 0:
        return []
    batches = math.ceil(count / max(1, batch_size))
    batches = min(count, math.ceil(batches / replicas) * replicas)
    size, extra = divmod(count, batches)
    ranges, start = [], 0
    for number in range(batches):
        end = start + size + (1 if number < extra else 0)
        ranges.append(range(start, end))
        start = end
    return ranges


class ReplicatedPipeline(BatchedInferencePipeline):
    def __init__(self, model: Any, replicas: int) -> None:
        super().__init__(model)
        self.replicas = replicas

    def _batched_segments_generator(
        self,
        features: Any,
        tokenizer: Any,
        chunks_metadata: list[dict[str, Any]],
        batch_size: int,
        options: Any,
        log_progress: bool,
    ) -> Iterator[Segment]:
        if options.word_timestamps:
            # Word alignment carries `last_speech_timestamp` from one batch to the next
            # (faster-whisper's forward reads and writes it): those batches stay in order.
            yield from super()._batched_segments_generator(
                features, tokenizer, chunks_metadata, batch_size, options, log_progress
            )
            return
        batches = even_batches(len(features), batch_size, self.replicas)
        number = 0
        with ThreadPoolExecutor(self.replicas, thread_name_prefix="replica") as pool:
            futures = [
                pool.submit(
                    self.forward,
                    features[batch.start : batch.stop],
                    tokenizer,
                    chunks_metadata[batch.start : batch.stop],
                    options,
                )
                for batch in batches
            ]
            try:
                for future in futures:
                    for result in future.result():
                        for segment in result:
                            number += 1
                            yield _segment(number, segment, options)
            finally:
                for future in futures:
                    future.cancel()  # a stopped consumer leaves no queued batch behind
        self.last_speech_timestamp = 0.0


def _segment(number: int, data: dict[str, Any], options: Any) -> Segment:
    # As faster-whisper's own generator builds them.
    return Segment(
        seek=data["seek"],
        id=number,
        text=data["text"],
        start=round(data["start"], 3),
        end=round(data["end"], 3),
        words=None if not options.word_timestamps else [Word(**w) for w in data["words"]],
        tokens=data["tokens"],
        avg_logprob=data["avg_logprob"],
        no_speech_prob=data["no_speech_prob"],
        compression_ratio=data["compression_ratio"],
        temperature=options.temperatures[0],
    )


def make_pipeline(model: Any, replicas: int) -> BatchedInferencePipeline:
    """The batched pipeline for `model`, spread over its replicas when it has several."""
    if replicas > 1 and callable(getattr(BatchedInferencePipeline, _GENERATOR, None)):
        return ReplicatedPipeline(model, replicas)
    return BatchedInferencePipeline(model)
