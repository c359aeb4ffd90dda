"""`transcriptor cleanup` and `transcriptor db`: the database in --data-dir, no server needed."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from server.cli.common import EXIT_OK, CliError, human_bytes
from server.config import Config
from server.store import MigrationError, Store, StoreError, backup_to
from server.store.migrate import JOBS_TABLE, ORPHANED_BY_UPGRADE, SCHEMA_VERSION

if TYPE_CHECKING:
    from server.jobs.orphans import OrphanReport


@dataclass(frozen=True)
class DbFacts:
    version: int
    jobs: int | None  # None when there is no jobs table
    orphaned_by_upgrade: int
    size: int


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
        return DbFacts(version, jobs if has_jobs else None, orphaned, path.stat().st_size)
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
    source, dest = await asyncio.to_thread(backup_paths, args.data_dir, args.path, args.force)
    try:
        # Straight from the file, not through Store.open: a backup must never migrate.
        await asyncio.to_thread(backup_to, source, dest)
    except (sqlite3.Error, OSError, StoreError) as error:
        raise CliError(f"backup of {source} to {dest} failed: {error}") from None
    facts = await asyncio.to_thread(read_facts, dest)
    jobs = f", {facts.jobs} job(s)" if facts.jobs is not None else ""
    size = human_bytes(facts.size)
    print(f"backed up {source} to {dest} ({size}, schema version {facts.version}{jobs}); integrity check ok")
    return EXIT_OK


def backup_paths(data_dir: Path, dest: Path, force: bool) -> tuple[Path, Path]:
    """The database and where its copy goes (PATH, or a stamped name inside folder PATH)."""
    source = database_path(data_dir)
    if dest.is_dir():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        dest = dest / f"{source.name}.backup-{stamp}"
    if dest.exists() and not force:
        raise CliError(f"{dest} already exists; pass --force to replace it")
    if not dest.parent.is_dir():
        raise CliError(f"folder {dest.parent} does not exist")
    if dest.resolve() == source.resolve():
        raise CliError("the backup cannot replace the database itself")
    return source, dest


# -- db migrate ------------------------------------------------------------------------------


async def migrate(args: argparse.Namespace) -> int:
    path = database_path(args.data_dir)
    before = await asyncio.to_thread(read_facts, path)
    if before.version == SCHEMA_VERSION:
        print(f"{path}: schema version {before.version}, already current; nothing to do")
        return EXIT_OK
    backups_before = await asyncio.to_thread(backups_of, path)
    try:
        store = await Store.open(path)
    except MigrationError as error:
        kept = f"; backup: {error.backup_path}" if error.backup_path else ""
        raise CliError(f"{error}{kept}") from None
    except (StoreError, sqlite3.Error, OSError) as error:
        raise CliError(str(error)) from None
    await store.close()
    after = await asyncio.to_thread(read_facts, path)
    made = sorted(await asyncio.to_thread(backups_of, path) - backups_before)
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


def backups_of(path: Path) -> set[Path]:
    return set(path.parent.glob(f"{path.name}.backup-*"))


# -- cleanup ---------------------------------------------------------------------------------


def cleanup_config(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    """The server's own settings (flags, then TRANSCRIPTOR_* variables, then defaults)."""
    from server.config import config_from

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
    from server.manager import ProcessManager

    config = cleanup_config(args, environ)
    path = await asyncio.to_thread(current_database, config.data_dir)
    store = await Store.open(path)
    try:
        watched = await watched_by_live_servers(store, config.orphan_timeout)
        remote = None
        if config.ray_address:
            # Ray rows are settled from the cluster (TRANSCRIPTOR_RAY_ADDRESS), never re-attached here.
            from server.executors.ray_cluster import RayCluster
            from server.jobs.ray_orphans import RayOrphans

            remote = RayOrphans(RayCluster(config.ray_address), store, adopts=False)
        from server.procs.cgroup import find_existing

        # Jobs' cgroups, found by the install's name wherever its server made them.
        cgroups = await asyncio.to_thread(find_existing, store.install_id)
        manager = ProcessManager(store, kill_grace=config.kill_grace, remote=remote, cgroups=cgroups)
        reports = await manager.cleanup_orphaned_processes(
            config.orphan_timeout,
            live_instance_ids=(),
            dry_run=args.dry_run,
            exclude_job_ids=watched,
        )
    finally:
        await store.close()
    print_reports(reports, timeout=config.orphan_timeout, dry_run=args.dry_run)
    return EXIT_OK


async def watched_by_live_servers(store: Store, timeout: float) -> set[int]:
    """Running jobs whose server is alive and whose heartbeat is fresh: that server records
    their endings itself (a job that exits this instant is not ours to call orphaned)."""
    from server.procs.identity import identity_matches

    stale = {job["id"] for job in await store.get_orphaned_jobs(timeout)}
    instances = {row["id"]: row for row in await store.list_instances()}
    watched = set()
    for job in await store.get_active_jobs():
        owner = instances.get(job["instance_id"] or "")
        if job["id"] in stale or owner is None:
            continue
        alive = await asyncio.to_thread(
            identity_matches, owner["pid"], owner["start_ticks"], owner["boot_id"], None
        )
        if alive:
            watched.add(int(job["id"]))
    return watched


def print_reports(reports: Sequence[OrphanReport], *, timeout: float, dry_run: bool) -> None:
    if not reports:
        print(
            f"no orphaned jobs: every running job has a live server and a heartbeat "
            f"younger than {timeout:g} s"
        )
        return
    for report in reports:
        pid = f"pid {report.pid}" if report.pid is not None else "no pid"
        if dry_run:
            action = (
                "would kill its processes (verified as the job's)"
                if report.verified
                else "would signal nothing (no live process is provably the job's)"
            )
            print(f"job {report.job_id} ({pid}): {action}; would be marked failed:")
        else:
            action = "killed its processes" if report.killed else "signalled nothing"
            print(f"job {report.job_id} ({pid}): {action}; marked failed:")
        print(f"    {report.reason}")
    if dry_run:
        print(f"dry run: {len(reports)} job(s) would be settled; nothing was signalled or changed")
    else:
        print(f"{len(reports)} orphaned job(s) settled")
