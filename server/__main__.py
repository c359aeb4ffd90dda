"""python -m server: parse flags and TRANSCRIPTOR_* variables into a Config, then serve."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from server.app import serve
from server.config import build_parser, check, config_from


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    serve(check(config_from(args, os.environ)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
