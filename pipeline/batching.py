"""Batched decoding spread over the model's replicas, so every core decodes at once.

faster-whisper's `BatchedInferencePipeline` decodes its batches one after another: on a
5-minute file that is a full batch of 8 windows, then a batch of 3, with the cores half
idle through the small one and through the serial steps inside each. CTranslate2 can
hold several replicas of a model (`num_workers`) that share the weights and decode at the
same time from separate Python threads. `ReplicatedPipeline` cuts the same windows into
batches of even size, a multiple of the replica count, and decodes them side by side;
the windows, the options and so the words are the same. Word timestamps carry state from
one batch to the next (the last speech time); the batches decode and align side by side
and only that last cheap step runs in order (`_DeferredWords`), so the word times are the
plain pipeline's too. Measured in benchmarks/PIPELINE_NOTES.md ("Replicas").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from faster_whisper import BatchedInferencePipeline, WhisperModel
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
        batches = even_batches(len(features), batch_size, self.replicas)
        number = 0
        # With words, each batch is decoded and aligned side by side, and the alignment's
        # last step (which reads the previous batch's last speech time) runs in order here.
        forward = _DeferredWords(self).forward if options.word_timestamps else self.forward
        with ThreadPoolExecutor(self.replicas, thread_name_prefix="replica") as pool:
            futures = [
                pool.submit(
                    forward,
                    features[batch.start : batch.stop],
                    tokenizer,
                    chunks_metadata[batch.start : batch.stop],
                    options,
                )
                for batch in batches
            ]
            try:
                for future in futures:
                    results = future.result()
                    if options.word_timestamps:
                        results, words = results
                        last = float(getattr(self, "last_speech_timestamp", 0.0))
                        self.last_speech_timestamp = words.finish(last)
                    for result in results:
                        for segment in result:
                            number += 1
                            yield _segment(number, segment, options)
            finally:
                for future in futures:
                    future.cancel()  # a stopped consumer leaves no queued batch behind
        self.last_speech_timestamp = 0.0


class _DeferredWords:
    """Runs faster-whisper's `forward` for one batch with word timestamps split in two.

    `add_word_timestamps` aligns the words (the costly part: a decoder pass and DTW), then
    adjusts each segment's first words against the last speech time of the batch before.
    Here the alignment runs at once, on this batch's thread; `finish` runs the rest with
    the alignments it found, in batch order, so the words are the ones the plain pipeline
    gives (a test compares them). The pipeline's other state is never written."""

    def __init__(self, pipeline: BatchedInferencePipeline) -> None:
        self.pipeline = pipeline

    def forward(self, *args: Any) -> tuple[Any, _Alignment]:
        alignment = _Alignment(self.pipeline.model)
        shim = copy.copy(self.pipeline)  # its own last_speech_timestamp, its model proxied
        shim.model = alignment
        return BatchedInferencePipeline.forward(shim, *args), alignment


class _Alignment:
    """The model, as `forward` sees it, with `add_word_timestamps` deferred."""

    def __init__(self, model: Any) -> None:
        self.whisper_model = model  # not `model`: forward reads the proxy's .model (CTranslate2's)
        self.call: tuple[Any, ...] = ()
        self.alignments: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.whisper_model, name)

    def add_word_timestamps(
        self, segments: Any, tokenizer: Any, encoder_output: Any, num_frames: Any, *rest: Any
    ) -> Any:
        if not segments:
            return None
        text_tokens = [
            [t for sub in segment for t in sub["tokens"] if t < tokenizer.eot] for segment in segments
        ]  # as faster-whisper's add_word_timestamps collects them
        found = self.whisper_model.find_alignment(tokenizer, text_tokens, encoder_output, num_frames)
        self.alignments = found
        self.call = (segments, tokenizer, None, num_frames, *rest[:2])
        return rest[2]

    def find_alignment(self, *_: Any) -> Any:
        return self.alignments

    def finish(self, last_speech_timestamp: float) -> float:
        """The rest of add_word_timestamps, after the batch before: the new last speech time."""
        if not self.call:
            return last_speech_timestamp
        found = WhisperModel.add_word_timestamps(self, *self.call, last_speech_timestamp)
        return last_speech_timestamp if found is None else float(found)


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
