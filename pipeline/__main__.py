"""`python -m pipeline INPUT --out-dir DIR` (cli.py), or `python -m pipeline --standby`
(standby.py). Only dispatches: nothing imports this module."""

from __future__ import annotations

import sys


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["--standby"]:
        from pipeline.standby import serve

        return serve(argv[1:])
    from pipeline.cli import main

    return main(argv)


if __name__ == "__main__":
    sys.exit(_dispatch(sys.argv[1:]))
