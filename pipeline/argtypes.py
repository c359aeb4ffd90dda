"""argparse types for numbers with bounds; the pipeline's and the server's flags share them."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole_number(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A type that accepts a whole number within [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
        _check_range(value, low, high)
        return value

    return parse


def number(low: float | None = None, high: float | None = None) -> Callable[[str], float]:
    """A type that accepts a finite number within [low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
        _check_range(value, low, high)
        return value

    return parse


def _check_range(value: float, low: float | None, high: float | None) -> None:
    if low is not None and high is not None and not low <= value <= high:
        raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, not {value:g}")
    if low is not None and value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low:g}, not {value:g}")
    if high is not None and value > high:
        raise argparse.ArgumentTypeError(f"must be at most {high:g}, not {value:g}")
