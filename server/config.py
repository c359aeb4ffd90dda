"""Every server setting in one table: name, environment variable, type, default and help.

The table is the `Config` dataclass: each field's type says how its flag and its
TRANSCRIPTOR_<NAME> variable are parsed (a bool reads "false" as false), its metadata
holds the help and any bounds. `build_parser` and `config_from` are fed from it, and a
test checks that docs/settings.md documents every row.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shlex
import typing
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pipeline.argtypes import number, whole_number
from server.procs.sampler import MIB

ENV_PREFIX = "TRANSCRIPTOR_"


def is_loopback_name(host: str) -> bool:
    """True for 127.x.x.x, ::1, localhost and *.localhost: the one loopback test."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _default_concurrency() -> int:
    # One job per core, each with one thread per model replica: a job alone still decodes
    # on every core (its replicas), and jobs side by side each keep a core busy, where two
    # threads on one short clip kept only ~1.4 cores busy (a burst of 12 clips took
    # 11.3-11.9 s this way against 14.3 s one at a time; benchmarks/PIPELINE_NOTES.md).
    return max(1, os.cpu_count() or 1)


def setting(
    default: Any,
    help: str,
    *,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A Config field: its default, help text, and optionally a stricter parser (bounds)."""
    meta = {"help": help, "metavar": metavar, "parse": parse}
    if callable(default):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, not {text!r}")


EXECUTORS = ("local", "ray")


def _executor(text: str) -> str:
    name = text.strip().lower()
    if name not in EXECUTORS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(EXECUTORS)}, not {text!r}")
    return name


def _http_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, not {text!r}")
    return text.strip()


def _words(text: str) -> tuple[str, ...]:
    return tuple(shlex.split(text))


_BY_TYPE: dict[Any, Callable[[str], Any]] = {
    int: whole_number(),
    float: number(),
    bool: parse_bool,
    Path: Path,
    str: str,
    str | None: str,
    int | None: whole_number(1),
    Path | None: Path,
    tuple[str, ...]: _words,
}


@dataclass(frozen=True)
class Config:
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8080, "port to listen on")
    data_dir: Path = setting(Path("./data"), "holds transcriptor.db, uploads/, logs/ and outputs/")
    token: str | None = setting(
        None,
        "access token required on every page, API call and websocket; generated when "
        "listening on a non-loopback address without one",
    )
    disconnect_grace: float = setting(
        5.0,
        "seconds to wait after the last client leaves before cancelling",
        metavar="SECONDS",
        parse=number(0),
    )
    live_idle_timeout: float = setting(
        60.0, "seconds a live session (/v1/realtime) may send no audio before it is ended",
        metavar="SECONDS", parse=number(1),
    )  # fmt: skip
    kill_grace: float = setting(
        5.0, "seconds between SIGTERM and SIGKILL", metavar="SECONDS", parse=number(0)
    )
    heartbeat_interval: float = setting(
        5.0, "seconds between heartbeats and orphan checks", metavar="SECONDS", parse=number(0.01)
    )
    metrics_interval: float = setting(
        1.0, "seconds between samples of each job's process tree", metavar="SECONDS", parse=number(0.01)
    )
    orphan_timeout: float = setting(
        300.0, "heartbeat age in seconds after which a job is orphaned", metavar="SECONDS", parse=number(0)
    )
    resume_interrupted: bool = setting(
        True,
        "take up again, when the server starts, the local jobs its going away interrupted "
        "(SIGTERM, SIGKILL, a reboot): queued again, their pipeline goes on at the first "
        "unfinished window; off: they end as today (cancelled by the shutdown, or orphaned)",
    )
    stall_timeout: float = setting(
        600.0,
        "seconds a running job may print nothing before it is stopped and failed as stalled; "
        "0 turns the watchdog off",
        metavar="SECONDS",
        parse=number(0),
    )
    max_concurrent_jobs: int = setting(
        _default_concurrency,
        "jobs running at once; the rest queue (default: one per core)",
        metavar="N",
        parse=whole_number(1),
    )
    # Every *_mb setting is MiB (2**20 bytes); the *_bytes properties below convert.
    max_upload_mb: float = setting(2048.0, "largest upload, in MiB", metavar="N", parse=number(0))
    disk_reserve_mb: float = setting(500.0, "free disk space an upload must leave, in MiB", metavar="N")
    log_cap_mb: float = setting(100.0, "size cap of each job's log file, in MiB", metavar="N")
    pipeline_command: tuple[str, ...] = setting(
        (),
        "command that runs the transcription program, shell-quoted "
        "(default: this Python with -m pipeline)",
        metavar="CMD",
    )
    standby: int = setting(
        1,
        "warm pipelines kept ready (model loaded) for jobs with the default model; 0 turns "
        "them off; none with a custom --pipeline-command",
        metavar="N",
        parse=whole_number(0),
    )
    default_model: str = setting("tiny.en", "model used when an upload names none", metavar="NAME")
    allow_model_downloads: bool = setting(
        False,
        "let a job download a model this server does not have (from the Hugging Face hub; "
        "several GB for the large ones); off: only the bundled and already cached models",
    )
    default_processes: int = setting(1, "worker processes per job by default", metavar="N")
    default_threads: int = setting(
        0, "CPU threads per worker by default (0: cores / max concurrent jobs)", metavar="N"
    )
    default_chunk_seconds: float = setting(
        0.0, "the most speech in one window of a job (0: the pipeline sizes them)", metavar="SECONDS"
    )
    default_overlap_seconds: float = setting(
        3.0, "no longer used (windows are cut in pauses; kept so old settings start)", metavar="SECONDS"
    )
    job_memory_mb: int | None = setting(
        None,
        "memory cap of each job in MiB, enforced by its cgroup; past it the kernel kills "
        "the job, which is failed naming the limit (needs cgroups; default: no cap)",
        metavar="N",
        parse=whole_number(1),
    )
    cgroup_root: Path | None = setting(
        None,
        "cgroup v2 directory under which this server makes its jobs' cgroups "
        "(default: the server's own cgroup); if none can be made there, jobs are "
        "contained by process groups and markers",
        metavar="PATH",
    )
    loop_lag_interval: float = setting(
        0.0,
        "seconds between event-loop lag samples, reported by /api/health as loop_lag_ms "
        "(0: off; the benchmarks turn it on)",
        metavar="SECONDS",
    )
    executor: str = setting(
        "local",
        "where jobs run: local (process groups on this machine) or ray (Ray Jobs on "
        "--ray-address; needs the ray extra)",
        metavar="local|ray",
        parse=_executor,
    )
    ray_address: str | None = setting(
        None, "the Ray dashboard's job API, e.g. http://127.0.0.1:8265 (--executor ray)", metavar="URL"
    )
    public_url: str | None = setting(
        None,
        "URL where Ray nodes reach this server to fetch their audio (default: http://HOST:PORT)",
        metavar="URL",
    )
    webhook_url: str | None = setting(
        None,
        "POST every job's final state here when it ends, whatever its status (signed with "
        "--webhook-secret; retried on network errors and 5xx)",
        metavar="URL",
        parse=_http_url,
    )
    webhook_secret: str | None = setting(
        None,
        "key of each webhook's signature: X-Transcriptor-Signature is sha256=HMAC-SHA256 of "
        "'TIMESTAMP.BODY' (default: webhooks go unsigned)",
        metavar="SECRET",
    )
    webhook_attempts: int = setting(
        6, "attempts at one webhook delivery before giving up", metavar="N", parse=whole_number(1)
    )
    webhook_backoff: float = setting(
        2.0,
        "seconds before a webhook's first retry; each retry waits twice as long (with jitter, "
        "at most an hour)",
        metavar="SECONDS",
        parse=number(0),
    )
    webhook_timeout: float = setting(
        10.0, "seconds one webhook attempt may take", metavar="SECONDS", parse=number(0.1)
    )
    allow_local_webhooks: bool = setting(
        False,
        "accept per-job webhook URLs that point at this server itself or at link-local "
        "addresses (169.254.0.0/16, fe80::/10); off: refused with 400",
    )

    def __post_init__(self) -> None:
        if self.default_threads <= 0:
            # Full queue, full machine, no oversubscription: the running jobs share the cores.
            threads = max(1, (os.cpu_count() or 1) // max(1, self.max_concurrent_jobs))
            object.__setattr__(self, "default_threads", threads)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MIB)

    @property
    def disk_reserve_bytes(self) -> int:
        return int(self.disk_reserve_mb * MIB)

    @property
    def log_cap_bytes(self) -> int:
        return int(self.log_cap_mb * MIB)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "transcriptor.db"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def node_url(self) -> str:
        """Where a cluster node reaches this server."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return is_loopback_name(self.host)


@dataclass(frozen=True)
class Setting:
    name: str
    flag: str
    env: str
    parse: Callable[[str], Any]
    default: Any  # MISSING when computed
    help: str
    metavar: str
    is_bool: bool


def settings_table() -> list[Setting]:
    types = typing.get_type_hints(Config)
    rows = []
    for f in fields(Config):
        kind = types[f.name]
        parse = f.metadata.get("parse") or _BY_TYPE[kind]
        rows.append(
            Setting(
                name=f.name,
                flag="--" + f.name.replace("_", "-"),
                env=ENV_PREFIX + f.name.upper(),
                parse=parse,
                default=f.default,
                help=f.metadata["help"],
                metavar=f.metadata.get("metavar") or f.name.upper(),
                is_bool=kind is bool,
            )
        )
    return rows


def documented_settings() -> list[tuple[str, str, str, str]]:
    """(flag, environment variable, default, help) for each setting, for --help and docs/settings.md."""
    return [
        (row.flag, row.env, "(computed)" if row.default is MISSING else str(row.default), row.help)
        for row in settings_table()
    ]


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; each flag's default may come from its environment variable."""
    for row in settings_table():
        shown = "computed" if row.default is MISSING else row.default
        help_text = f"{row.help} (default: {shown}; env {row.env})"
        if row.is_bool:
            parser.add_argument(
                row.flag, dest=row.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(
                row.flag, dest=row.name, type=row.parse, default=None, metavar=row.metavar, help=help_text
            )


def config_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    """Flags win over environment variables, which win over the defaults."""
    values: dict[str, Any] = {}
    for row in settings_table():
        value = getattr(args, row.name, None)
        env_value = environ.get(row.env)
        if value is None and env_value not in (None, ""):
            try:
                value = row.parse(env_value)
            except (ValueError, argparse.ArgumentTypeError) as error:
                raise SystemExit(f"error: {row.env}={env_value!r} is not valid: {error}") from None
        if value is not None:
            values[row.name] = value
    return Config(**values)


def build_parser(prog: str = "python -m server") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Run the transcriptor server.")
    add_config_arguments(parser)
    return parser


def check(config: Config) -> Config:
    """Refuse settings that cannot work together, and generate a token where one is required."""
    problems = []
    for row in settings_table():
        value = getattr(config, row.name)
        if value is not None and row.parse is not _BY_TYPE.get(type(value)):
            # Bounds of a setting made in code rather than parsed from text.
            try:
                row.parse(str(value))
            except (ValueError, argparse.ArgumentTypeError) as error:
                problems.append(f"{row.flag} {error}")
    if config.executor == "ray" and not config.ray_address:
        problems.append("--executor ray needs --ray-address (the Ray dashboard URL)")
    if problems:
        raise SystemExit("error: " + "; ".join(problems))
    if not config.token and not config.is_loopback:
        # Reachable from other machines: never serve openly (Jupyter does the same).
        config = replace(config, token=secrets.token_urlsafe(24))
    return config
