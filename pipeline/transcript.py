"""The transcript's data: words and segments with absolute times in seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Word:
    start: float
    end: float
    text: str  # as the model wrote it, usually with a leading space
    probability: float = 1.0

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "word": self.text,
            "probability": round(self.probability, 4),
        }


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = field(default=())
    # The decoder's own view of the segment, as OpenAI's verbose_json reports it; a
    # segment cut at a chunk boundary (merge.py) keeps none of it.
    decoding: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "words": [word.to_dict() for word in self.words],
            **self.decoding,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        words = tuple(
            Word(w["start"], w["end"], w["word"], w.get("probability", 1.0))
            for w in data.get("words", ())
        )
        decoding = {key: data[key] for key in DECODING_FIELDS if key in data}
        return cls(data["start"], data["end"], data["text"], words, decoding)


DECODING_FIELDS = ("seek", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob")
