"""schema.sql and what the migrations read of a database's shape: tables, columns, and
the statements that create each object."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable

from server.resources import resource_path

SCHEMA_PATH = resource_path("schema.sql")
JOBS_TABLE = "transcription_jobs"
_CREATES = re.compile(
    r"^CREATE\s+(?:VIRTUAL\s+)?(?:TABLE|INDEX|TRIGGER)\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I
)


def schema_statements() -> list[str]:
    """schema.sql split into statements (executescript would COMMIT our transaction)."""
    statements: list[str] = []
    buf = ""
    for line in SCHEMA_PATH.read_text(encoding="utf-8").splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    return statements


def _without_comments(statement: str) -> str:
    return "\n".join(line for line in statement.splitlines() if not line.lstrip().startswith("--"))


def create_missing(conn: sqlite3.Connection, names: Iterable[str]) -> None:
    """Run schema.sql's CREATE statement of each named object the database lacks, in the
    file's order, so a migration and a fresh database get the very same definitions."""
    wanted = set(names)
    have = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    found = set()
    for statement in schema_statements():
        match = _CREATES.match(_without_comments(statement).strip())
        if match and match.group(1) in wanted:
            found.add(match.group(1))
            if match.group(1) not in have:
                conn.execute(statement)
    if missing := wanted - found:
        raise ValueError(f"schema.sql creates no {', '.join(sorted(missing))}")


def tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return {r[0] for r in rows}


def columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    """(name, declared type) of each column of table."""
    return [(r[1], r[2] or "") for r in conn.execute(f'PRAGMA table_info("{table}")')]


def add_columns(conn: sqlite3.Connection, declared: dict[str, str]) -> None:
    """New nullable columns of the jobs table, so existing rows need no rewrite. A v0
    upgrade (or an extra column it carried over) may already have one: only the missing
    ones are added."""
    have = {name for name, _ in columns(conn, JOBS_TABLE)}
    for name, decl in declared.items():
        if name not in have:
            conn.execute(f'ALTER TABLE {JOBS_TABLE} ADD COLUMN "{name}" {decl}')
