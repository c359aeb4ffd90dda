"""Checks on processes the tests started; nothing here signals anything."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil


def alive_in_group(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(proc.pid) == pgid:
                found.append(proc)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return found


def alive_with_env(marker_name: str, marker_value: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(marker_name) == marker_value:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def daemon_pid(pidfile: Path) -> int | None:
    """The pid a daemon child wrote to `pidfile`, or None until it has."""
    try:
        return int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return None


def is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def proc_key(proc: psutil.Process) -> tuple[int, float]:
    """(pid, create_time): a process's identity, so a reused pid is never mistaken for it."""
    return proc.pid, proc.create_time()


def alive(key: tuple[int, float]) -> bool:
    """True while the process (pid, create_time) exists and is not a zombie."""
    pid, created = key
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def proc_key_safe(proc: psutil.Process) -> tuple[int, float]:
    try:
        return proc_key(proc)
    except psutil.Error:
        return proc.pid, -1.0
