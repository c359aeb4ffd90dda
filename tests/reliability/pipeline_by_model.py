#!/usr/bin/env python3
"""A pipeline command whose behaviour each upload picks through its `model` field.

`pipeline_by_model.py BEHAVIOURS.json INPUT --out-dir D --model NAME ...` looks NAME up in
the JSON file ({"name": ["--fake-flag", ...]}) and execs tests/fixtures/fake_pipeline.py
with those flags and the server's arguments. exec keeps the pid, so the server's group
leader is the fake pipeline itself. One server can then run a flooding job beside a quiet
one, which a single --pipeline-command could not express.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "fake_pipeline.py"


def main() -> None:
    behaviours = json.loads(Path(sys.argv[1]).read_text())
    args = sys.argv[2:]
    model = args[args.index("--model") + 1] if "--model" in args else ""
    if model not in behaviours:
        print(f"error: no fake behaviour named {model!r}", flush=True)
        sys.exit(2)
    os.execv(sys.executable, [sys.executable, str(FAKE), *behaviours[model], *args])


if __name__ == "__main__":
    main()
