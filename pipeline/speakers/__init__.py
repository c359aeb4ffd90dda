"""Speaker labels: who said what, from models installed by pip (the `speakers` extra).

The stage runs after transcription in a child of the pipeline (stage.py), so a stop,
the memory cap and the accounting treat it like decoding; labels go on words and
segments (assign.py).
"""

from __future__ import annotations

import importlib.util

EXTRA = "transcriptor[speakers]"
MAX_SPEAKERS = 10
CHOICES = ("off", "auto", *(str(n) for n in range(1, MAX_SPEAKERS + 1)))


def parse_speakers(text: str) -> str:
    """'off', 'auto' or '1'-'10'; raises ValueError naming the choices otherwise."""
    value = text.strip().lower()
    if value not in CHOICES:
        raise ValueError(f"speakers must be off, auto or a number 1-{MAX_SPEAKERS}, not {text[:20]!r}")
    return value


def missing() -> str | None:
    """Why speaker labels cannot run here (the extra is not installed), or None."""
    lacking = [name for name in ("torch",) if importlib.util.find_spec(name) is None]
    try:
        from pipeline.speakers.voiceprint import MissingModel, weights_path

        weights_path()
    except MissingModel:
        lacking.append("resemblyzer")
    if lacking:
        return f"speaker labels need the speakers extra (pip install '{EXTRA}'): {', '.join(lacking)} missing"
    return None
