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
    speaker: str | None = None  # "A", "B", ... when speakers were labelled

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "word": self.text,
            "probability": round(self.probability, 4),
            **({"speaker": self.speaker} if self.speaker else {}),
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
    speaker: str | None = None

    def spoken_by(self, names: dict[str, str]) -> str | None:
        """The speaker's name: a rename in `names`, else the label."""
        return names.get(self.speaker, self.speaker) if self.speaker else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            **({"speaker": self.speaker} if self.speaker else {}),
            "words": [word.to_dict() for word in self.words],
            **self.decoding,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        words = tuple(
            Word(w["start"], w["end"], w["word"], w.get("probability", 1.0), w.get("speaker"))
            for w in data.get("words", ())
        )
        decoding = {key: data[key] for key in DECODING_FIELDS if key in data}
        return cls(data["start"], data["end"], data["text"], words, decoding, data.get("speaker"))


DECODING_FIELDS = ("seek", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob")
