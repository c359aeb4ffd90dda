"""`transcriptor cleanup` and `transcriptor db`: the database in --data-dir, no server needed."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.cli_common import EXIT_OK, CliError, human_bytes
from server.config import Config
from server.store import (
    JOBS_TABLE,
    ORPHANED_BY_UPGRADE,
    SCHEMA_VERSION,
    MigrationError,
    Store,
    StoreError,
    backup_to,
)


@dataclass(frozen=True)
class DbFacts:
    version: int
    jobs: int | None  # None when there is no jobs table
    orphaned_by_upgrade: int


def read_facts(path: Path) -> DbFacts:
    """Schema version and job count, read-only (a server may be writing meanwhile)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as error:
        raise CliError(f"cannot open {path}: {error}") from None
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        has_jobs = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (JOBS_TABLE,)
        ).fetchone()
        jobs = orphaned = 0
        if has_jobs:
            jobs = int(conn.execute(f"SELECT count(*) FROM {JOBS_TABLE}").fetchone()[0])
            columns = {r[1] for r in conn.execute(f"PRAGMA table_info({JOBS_TABLE})")}
            if "error_message" in columns:
                orphaned = int(
                    conn.execute(
                        f"SELECT count(*) FROM {JOBS_TABLE} WHERE error_message LIKE ?",
                        (ORPHANED_BY_UPGRADE + "%",),
                    ).fetchone()[0]
                )
        return DbFacts(version, jobs if has_jobs else None, orphaned)
    except sqlite3.DatabaseError as error:
        raise CliError(f"{path} cannot be read as a SQLite database ({error})") from None
    finally:
        conn.close()


def database_path(data_dir: Path) -> Path:
    """The existing database in data_dir; never creates one."""
    path = Config(data_dir=data_dir).db_path
    if not path.is_file():
        raise CliError(
            f"no database at {path}; pass --data-dir (or set TRANSCRIPTOR_DATA_DIR) to the "
            "server's data folder"
        )
    return path


# -- db backup -------------------------------------------------------------------------------


async def backup(args: argparse.Namespace) -> int:
    source = database_path(args.data_dir)
    dest: Path = args.path
    if dest.is_dir():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        dest = dest / f"{source.name}.backup-{stamp}"
    if dest.exists() and not args.force:
        raise CliError(f"{dest} already exists; pass --force to replace it")
    if not dest.parent.is_dir():
        raise CliError(f"folder {dest.parent} does not exist")
    if dest.resolve() == source.resolve():
        raise CliError("the backup cannot replace the database itself")
    try:
        # Straight from the file, not through Store.open: a backup must never migrate.
        await asyncio.to_thread(backup_to, source, dest)
    except (sqlite3.Error, OSError, StoreError) as error:
        raise CliError(f"backup of {source} to {dest} failed: {error}") from None
    facts = await asyncio.to_thread(read_facts, dest)
    jobs = f", {facts.jobs} job(s)" if facts.jobs is not None else ""
    print(
        f"backed up {source} to {dest} ({human_bytes(dest.stat().st_size)}, "
        f"schema version {facts.version}{jobs}); integrity check ok"
    )
    return EXIT_OK


# -- db migrate ------------------------------------------------------------------------------


async def migrate(args: argparse.Namespace) -> int:
    path = database_path(args.data_dir)
    before = await asyncio.to_thread(read_facts, path)
    if before.version == SCHEMA_VERSION:
        print(f"{path}: schema version {before.version}, already current; nothing to do")
        return EXIT_OK
    backups_before = set(path.parent.glob(f"{path.name}.backup-*"))
    try:
        store = await Store.open(path)
    except MigrationError as error:
        kept = f"; backup: {error.backup_path}" if error.backup_path else ""
        raise CliError(f"{error}{kept}") from None
    except (StoreError, sqlite3.Error, OSError) as error:
        raise CliError(str(error)) from None
    await store.close()
    after = await asyncio.to_thread(read_facts, path)
    made = sorted(set(path.parent.glob(f"{path.name}.backup-*")) - backups_before)
    print(f"{path}: schema version {before.version} -> {after.version}")
    print(f"backup of version {before.version}: {made[-1] if made else 'none (it was empty)'}")
    if after.jobs is not None:
        settled = (
            f" ({after.orphaned_by_upgrade} left processing by the older tool: "
            "now failed, orphaned; nothing was signalled)"
            if after.orphaned_by_upgrade
            else ""
        )
        print(f"jobs: {after.jobs}{settled}")
    return EXIT_OK


# -- cleanup ---------------------------------------------------------------------------------


def cleanup_config(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    """The server's own settings (flags, then TRANSCRIPTOR_* variables, then defaults)."""
    from server.__main__ import config_from

    given = argparse.Namespace(
        data_dir=args.data_dir, orphan_timeout=args.timeout, kill_grace=args.kill_grace
    )
    return config_from(given, environ)


def current_database(data_dir: Path) -> Path:
    path = database_path(data_dir)
    facts = read_facts(path)
    if facts.version != SCHEMA_VERSION:
        raise CliError(
            f"{path} has schema version {facts.version}, not {SCHEMA_VERSION}; "
            "upgrade it first with `transcriptor db migrate`"
        )
    return path


async def cleanup(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from server.processes import ProcessManager

    config = cleanup_config(args, environ)
    path = await asyncio.to_thread(current_database, config.data_dir)
    store = await Store.open(path)
    try:
        manager = ProcessManager(store, kill_grace=config.kill_grace, instance_id=None)
        reports = await manager.cleanup_orphaned_processes(
            config.orphan_timeout, live_instance_ids=set(), dry_run=args.dry_run
        )
    finally:
        await store.close()
    print_reports(reports, timeout=config.orphan_timeout, dry_run=args.dry_run)
    return EXIT_OK


def print_reports(reports: list[Any], *, timeout: float, dry_run: bool) -> None:
    if not reports:
        print(f"no orphaned jobs (no running job has a heartbeat older than {timeout:g} s)")
        return
    for report in reports:
        print(f"job {report.job_id}: {report.reason}")
    if dry_run:
        print(f"dry run: nothing was signalled or changed ({len(reports)} job(s) would be settled)")
