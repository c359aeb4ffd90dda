"""Child processes a test spawned itself (server.procs.spawn): reading their output and
waiting on their end. Nothing here signals anything."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from server.procs.spawn import SpawnedProcess

# The `start_child` fixture of tests/procs: start(name, *args, marker=None).
Spawner = Callable[..., Awaitable[SpawnedProcess]]


async def read_until(child: SpawnedProcess, prefix: str) -> list[str]:
    """Lines of child's output up to and including the first one starting with prefix."""
    assert child.process.stdout is not None
    lines: list[str] = []
    while True:
        raw = await child.process.stdout.readline()
        assert raw, f"EOF before {prefix!r}; got {lines}"
        line = raw.decode().rstrip("\n")
        lines.append(line)
        if line.startswith(prefix):
            return lines


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    return data[data.rindex(b")") + 2 : data.rindex(b")") + 3] not in (b"Z", b"X")


async def exited(child: SpawnedProcess, timeout: float = 10) -> int:
    """The exit code as soon as the child exits (polled: there is no event for it)."""
    for _ in range(int(timeout / 0.01)):
        if child.process.returncode is not None:
            return child.process.returncode
        await asyncio.sleep(0.01)
    raise AssertionError("child did not exit")


def pids_from(lines: list[str], prefix: str) -> list[int]:
    """The pids in lines like `PREFIX PID ...`."""
    return [int(line.split()[1]) for line in lines if line.startswith(prefix)]
