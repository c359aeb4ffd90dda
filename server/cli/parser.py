"""The `transcriptor` command line: every subcommand, its flags and its --help text."""

from __future__ import annotations

import argparse
import os
import shutil
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.argtypes import number, whole_number
from server.cli.common import (
    DATA_DIR_ENV,
    EXIT_CODES_HELP,
    SERVER_ENV,
    TOKEN_ENV,
    data_dir_default,
    server_default,
    token_default,
)

PROG = "transcriptor"
MAX_LOG_LINES = 10_000  # the server's cap on GET /api/jobs/{id}/logs?lines=N


def _text(*paragraphs: str) -> str:
    """Paragraphs wrapped for --help, kept apart by blank lines (argparse would join them)."""
    width = min(100, shutil.get_terminal_size().columns) - 2
    return "\n\n".join(textwrap.fill(p, width) for p in paragraphs)


def _add_server_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    group = parser.add_argument_group("server")
    group.add_argument(
        "--server",
        metavar="URL",
        default=server_default(environ),
        help=f"the server to ask (default: %(default)s; env {SERVER_ENV})",
    )
    group.add_argument(
        "--token",
        default=token_default(environ),
        help=f"the server's access token, sent as Authorization: Bearer (env {TOKEN_ENV})",
    )


def _add_data_dir_argument(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=data_dir_default(environ),
        help="the server's data folder, holding transcriptor.db "
        f"(default: %(default)s; env {DATA_DIR_ENV}); no server is needed",
    )


def _command_parser(
    commands: Any, name: str, summary: str, *paragraphs: str, **kwargs: Any
) -> argparse.ArgumentParser:
    """A subcommand whose --help shows the paragraphs, then the exit codes."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=_text(*paragraphs) if paragraphs else summary,
        epilog=_text(EXIT_CODES_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    return parser


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_text(
            "Run the transcriptor server, transcribe a file, and see and control the jobs "
            "of a running server from a terminal. `transcriptor COMMAND --help` tells more.",
            "jobs, logs and stop talk to a running server (--server, --token); cleanup and "
            "db work on the database in --data-dir, with no server needed.",
        ),
        epilog=_text(EXIT_CODES_HELP),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_serve(commands)
    commands.add_parser(
        "transcribe",
        help="transcribe one file with the pipeline, no server needed",
        add_help=False,
        prefix_chars="\0",  # everything after `transcribe`, --help too, goes to its own parser
    ).add_argument("argv", nargs=argparse.REMAINDER)
    _add_jobs(commands, environ)
    _add_logs(commands, environ)
    _add_stop(commands, environ)
    _add_cleanup(commands, environ)
    _add_db(commands, environ)
    return parser


def _add_serve(commands: Any) -> None:
    from server.config import add_config_arguments

    serve = _command_parser(
        commands,
        "serve",
        "run the server (the same flags as python -m server)",
        "Run the transcriptor server. Every flag can also be set with its TRANSCRIPTOR_* "
        "environment variable; a flag wins over the variable.",
    )
    add_config_arguments(serve)


def _add_jobs(commands: Any, environ: Mapping[str, str]) -> None:
    jobs = _command_parser(
        commands,
        "jobs",
        "list the jobs with their process, CPU and memory",
        "The server's jobs, newest first: id, file, status and progress, and for running "
        "jobs the PID, whether the process is running, and its CPU and memory summed over "
        "its whole process tree, as the server last sampled them.",
        aliases=["ps"],
    )
    jobs.add_argument("--active", action="store_true", help="only queued and running jobs")
    jobs.add_argument(
        "--json",
        action="store_true",
        help='print {"server": URL, "jobs": [...]}: each job as GET /api/jobs/{id} gives '
        'it, plus "process" (pid, running, cpu_percent, memory_mb, num_processes) for '
        "running jobs, null for others",
    )
    _add_server_arguments(jobs, environ)


def _add_logs(commands: Any, environ: Mapping[str, str]) -> None:
    logs = _command_parser(
        commands,
        "logs",
        "print a job's log, or follow it live with -f",
        "Print the last N lines of a job's log. With -f, print the last N lines and then "
        "each new line as the job writes it, and exit when the job ends (exit 0 whether "
        "it completed, failed or was cancelled; how it ended goes to stderr). Ctrl-C "
        "detaches.",
        "Note: while following, this command is a viewer of the job, like an open job "
        "page. A job uploaded with on_disconnect=cancel (the default) is cancelled by the "
        "server when its last viewer leaves and nobody returns within the disconnect "
        "grace: detaching from such a job, when nobody else watches it, stops it. Jobs "
        "uploaded with on_disconnect=keep run on.",
    )
    logs.add_argument("job", type=whole_number(1), metavar="JOB", help="the job's id")
    logs.add_argument(
        "-n",
        "--lines",
        type=whole_number(0, MAX_LOG_LINES),
        default=20,
        metavar="N",
        help=f"how many of the last lines to print, 0-{MAX_LOG_LINES} (default: %(default)s)",
    )
    logs.add_argument("-f", "--follow", action="store_true", help="follow the log live until the job ends")
    _add_server_arguments(logs, environ)


def _add_stop(commands: Any, environ: Mapping[str, str]) -> None:
    stop = _command_parser(
        commands,
        "stop",
        "stop a queued or running job",
        "Stop a job: the server kills its whole process group (SIGTERM, then SIGKILL after "
        "its kill grace) and records it as cancelled (`stopped by user`). Prints how the "
        "job ended.",
    )
    stop.add_argument("job", type=whole_number(1), metavar="JOB", help="the job's id")
    _add_server_arguments(stop, environ)


def _add_cleanup(commands: Any, environ: Mapping[str, str]) -> None:
    cleanup = _command_parser(
        commands,
        "cleanup",
        "settle orphaned jobs and kill their leftover processes",
        "Find running jobs whose heartbeat is older than --timeout (their server died or "
        "hangs), show what would be killed and why, kill only processes verified to be "
        "that job's (the recorded PID, start time and boot), and mark the jobs failed "
        "(`orphaned: ...`). Works on the database directly, with no server needed; a "
        "running server keeps its own jobs' heartbeats fresh, so they are left alone.",
    )
    cleanup.add_argument(
        "--timeout",
        type=number(0),
        default=None,
        metavar="SECONDS",
        help="heartbeat age after which a job is orphaned (default: the server's "
        "--orphan-timeout, 300; env TRANSCRIPTOR_ORPHAN_TIMEOUT)",
    )
    cleanup.add_argument(
        "--kill-grace",
        type=number(0),
        default=None,
        metavar="SECONDS",
        help="seconds between SIGTERM and SIGKILL (default: 5; env TRANSCRIPTOR_KILL_GRACE)",
    )
    cleanup.add_argument(
        "--dry-run", action="store_true", help="show what would be done; signal and change nothing"
    )
    _add_data_dir_argument(cleanup, environ)


def _add_db(commands: Any, environ: Mapping[str, str]) -> None:
    db = _command_parser(
        commands,
        "db",
        "back up or upgrade the database",
        "Database maintenance, on the file directly; no server is needed.",
    )
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    backup = _command_parser(
        db_commands,
        "backup",
        "write a consistent, integrity-checked copy of the database",
        "Copy transcriptor.db to PATH as one consistent snapshot (safe while the server "
        "runs) and check the copy's integrity before it takes PATH's name. PATH may be a "
        "folder; the copy is then named after the database and the time.",
    )
    backup.add_argument("path", type=Path, metavar="PATH", help="the copy to write, or a folder")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    _add_data_dir_argument(backup, environ)
    migrate = _command_parser(
        db_commands,
        "migrate",
        "upgrade the database to this version's schema, backup first",
        "Upgrade transcriptor.db (for example one the older tool wrote) to the current "
        "schema. A backup is written next to it first, and the upgrade is one transaction: "
        "a failure leaves the database as it was. Prints the schema version before and "
        "after and the backup's path.",
    )
    _add_data_dir_argument(migrate, environ)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transcriptor")
    except PackageNotFoundError:
        return "(not installed)"
