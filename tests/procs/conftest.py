from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator

import pytest

from server.manager import ProcessManager
from server.procs.kill import Target, kill_tree
from server.procs.spawn import SpawnedProcess, spawn
from server.store import Store
from tests.helpers.children import script
from tests.helpers.spawned import Spawner


@pytest.fixture
def manager(store: Store) -> ProcessManager:
    return ProcessManager(store, kill_grace=0.5)


@pytest.fixture
async def start_child(manager: ProcessManager) -> AsyncIterator[Spawner]:
    """Spawn a child script with a marker; whatever is left of it is killed afterwards.

    Only the groups and marker-carrying processes these tests started are ever signalled.
    """
    started: list[tuple[SpawnedProcess, str]] = []

    async def start(name: str, *args: object, marker: str | None = None) -> SpawnedProcess:
        marker = marker or f"test-{uuid.uuid4().hex}:0"
        child = await spawn([sys.executable, script(name), *map(str, args)], marker=marker)
        started.append((child, marker))
        return child

    yield start
    for child, marker in started:
        await kill_tree(Target.of(child.pgid, child.identity, marker), grace=0.2, escapees=True)
        if child.process.stdin is not None:
            child.process.stdin.close()
        await child.process.wait()
