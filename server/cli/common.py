"""What every `transcriptor` subcommand shares: exit codes, the one error type, settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# Exit codes, documented in `transcriptor --help`; scripts branch on them.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_UNREACHABLE = 3
EXIT_NO_JOB = 4
EXIT_AUTH = 5
EXIT_INTERRUPTED = 130

DEFAULT_SERVER = "http://127.0.0.1:8080"
SERVER_ENV = "TRANSCRIPTOR_SERVER"
TOKEN_ENV = "TRANSCRIPTOR_TOKEN"
DATA_DIR_ENV = "TRANSCRIPTOR_DATA_DIR"

EXIT_CODES_HELP = (
    "exit codes: 0 done; 1 error; 2 bad arguments; 3 server not reachable; "
    "4 no such job; 5 access token missing or wrong; 130 interrupted (Ctrl-C)"
)


class CliError(Exception):
    """Ends the command with one `error: ...` line on stderr and the given exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def server_default(environ: Mapping[str, str]) -> str:
    return environ.get(SERVER_ENV) or DEFAULT_SERVER


def token_default(environ: Mapping[str, str]) -> str | None:
    return environ.get(TOKEN_ENV) or None


def data_dir_default(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(DATA_DIR_ENV) or "./data")


def human_bytes(count: float) -> str:
    """A size for a person, in binary units like every other size this project shows."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
