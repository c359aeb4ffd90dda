"""`transcriptor`: the server, the pipeline, and a look at what is running, in one command.

`jobs`, `logs` and `stop` talk to a running server (--server, --token); `cleanup` and `db`
work on the database in --data-dir with no server; `serve` and `transcribe` run the
server and the pipeline. The flags are in `server/cli_parser.py`; each subcommand lives in
a `server/cli_*.py` module that is only imported when chosen, so `transcriptor jobs` does
not pay for the pipeline's imports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from server.cli.common import EXIT_INTERRUPTED, CliError
from server.cli.parser import build_parser


def _command(args: argparse.Namespace) -> Callable[[], Coroutine[Any, Any, int]] | None:
    """The coroutine function of an async subcommand, or None for `serve`/`transcribe`."""
    if args.command in ("jobs", "ps"):
        from server.cli import jobs as cli_jobs

        return lambda: cli_jobs.jobs(args)
    if args.command == "logs":
        if args.follow:
            from server.cli import follow as cli_follow

            return lambda: cli_follow.follow(args)
        from server.cli import jobs as cli_jobs

        return lambda: cli_jobs.logs(args)
    if args.command == "stop":
        from server.cli import jobs as cli_jobs

        return lambda: cli_jobs.stop(args)
    if args.command == "cleanup":
        from server.cli import admin as cli_local

        return lambda: cli_local.cleanup(args, os.environ)
    if args.command == "db":
        from server.cli import admin as cli_local

        if args.db_command == "backup":
            return lambda: cli_local.backup(args)
        return lambda: cli_local.migrate(args)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            from server.app import serve
            from server.config import check, config_from

            serve(check(config_from(args, os.environ)))
            return 0
        if args.command == "transcribe":
            from server.cli import transcribe as cli_transcribe

            return cli_transcribe.main(args.argv)
        command = _command(args)
        assert command is not None, f"no handler for {args.command}"
        return asyncio.run(command())
    except CliError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        if args.command == "logs":
            print(f"\ndetached from job {args.job}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader (`| head`) left: say nothing more, and keep the final flush quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
