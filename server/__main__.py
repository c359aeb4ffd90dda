"""python -m server: parse flags and TRANSCRIPTOR_* variables into a Config, then serve."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from server.auth import QuietAccessLogger
from server.config import ENV_PREFIX, Config

SHUTDOWN_TIMEOUT = 3.0


def _converter(annotation: str) -> Any:
    if annotation.startswith("int"):
        return int
    if annotation.startswith("float"):
        return float
    if annotation.startswith("Path"):
        return Path
    if annotation.startswith("tuple"):
        return lambda text: tuple(shlex.split(text))
    return str


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field; each flag's default may come from TRANSCRIPTOR_<NAME>."""
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        shown = f.default if f.default is not MISSING else "computed"
        parser.add_argument(
            flag,
            dest=f.name,
            type=_converter(str(f.type)),
            default=None,
            metavar=f.metadata.get("metavar") or f.name.upper(),
            help=f"{f.metadata['help']} (default: {shown}; env {env})",
        )


def config_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    """Flags win over environment variables, which win over the defaults."""
    values: dict[str, Any] = {}
    for f in fields(Config):
        value = getattr(args, f.name, None)
        env_value = environ.get(ENV_PREFIX + f.name.upper())
        if value is None and env_value not in (None, ""):
            try:
                value = _converter(str(f.type))(env_value)
            except ValueError:
                raise SystemExit(
                    f"error: {ENV_PREFIX + f.name.upper()}={env_value!r} is not valid"
                ) from None
        if value is not None:
            values[f.name] = value
    return Config(**values)


def build_parser(prog: str = "python -m server") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run the transcriptor server.")
    add_config_arguments(parser)
    return parser


def check(config: Config) -> Config:
    """Refuse settings that cannot work, and generate a token where one is required."""
    problems = []
    for name in ("disconnect_grace", "kill_grace", "orphan_timeout", "max_upload_mb"):
        if getattr(config, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must not be negative")
    for name in ("heartbeat_interval", "metrics_interval"):
        if getattr(config, name) <= 0:
            problems.append(f"--{name.replace('_', '-')} must be positive")
    if config.max_concurrent_jobs < 1:
        problems.append("--max-concurrent-jobs must be at least 1")
    if problems:
        raise SystemExit("error: " + "; ".join(problems))
    if not config.token and not config.is_loopback:
        # Reachable from other machines: never serve openly (Jupyter does the same).
        config = replace(config, token=secrets.token_urlsafe(24))
    return config


def serve(config: Config) -> None:
    from server.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"http://{host}:{config.port}/"
    if config.token:
        url += f"?token={config.token}"
    print(f"transcriptor serving {config.data_dir} at {url}", flush=True)
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        access_log_class=QuietAccessLogger,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        print=None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    serve(check(config_from(args, os.environ)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
