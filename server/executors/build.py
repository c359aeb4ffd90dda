"""The one place the server's executor is made, from the settings.

Containment first (a cgroup per job where the kernel allows it), then what starts jobs:
warm standbys for the built-in pipeline, a plain local executor for a custom command, or
Ray (imported only when chosen). A cluster named by --ray-address is kept for the orphan
rule even when jobs run here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.config import Config
from server.executors.base import Executor
from server.executors.local import LocalExecutor
from server.executors.standby import StandbyExecutor
from server.procs.cgroup import Cgroups, CgroupUnavailable, setup

if TYPE_CHECKING:
    from server.executors.ray import RayExecutor
    from server.executors.ray_cluster import RayCluster
    from server.store import Store

log = logging.getLogger(__name__)


@dataclass
class Built:
    executor: Executor[Any]
    cgroups: Cgroups | None
    cluster: RayCluster | None  # the cluster whose rows the orphan rule settles, if any
    ray: RayExecutor | None = None  # when jobs run on Ray: it re-attaches their jobs
    standby: StandbyExecutor | None = None

    @property
    def containment(self) -> str:
        """For /api/health and the home page."""
        return "cgroup" if self.cgroups is not None else "process-group"

    def begin(self) -> None:
        """Start what runs beside the jobs (the standby pool), once the store is settled."""
        if self.standby is not None:
            self.standby.begin()

    async def close(self) -> None:
        if self.standby is not None:
            await self.standby.close()
        if self.cgroups is not None:
            self.cgroups.close()

    async def standby_status(self) -> dict[str, Any] | None:
        """None when this server keeps no standbys."""
        return await self.standby.status() if self.standby is not None else None


def build(config: Config, store: Store, given: Executor[Any] | None = None) -> Built:
    """The executor the settings ask for (`given` stands in for it, in tests). Blocking:
    it reads and writes cgroup files."""
    cgroups = containment(store.install_id, root=config.cgroup_root, memory_mb=config.job_memory_mb)
    cluster = None
    if config.executor == "ray" or config.ray_address:
        from server.executors.ray_cluster import RayCluster

        assert config.ray_address is not None, "config.check() requires it with --executor ray"
        cluster = RayCluster(config.ray_address)
    executor = given or _make(config, store, cgroups, cluster)
    built = Built(executor, cgroups, cluster)
    if isinstance(executor, StandbyExecutor):
        built.standby = executor
    if cluster is not None:
        from server.executors.ray import RayExecutor

        built.ray = executor if isinstance(executor, RayExecutor) else None
    return built


def _make(config: Config, store: Store, cgroups: Cgroups | None, cluster: RayCluster | None) -> Executor[Any]:
    if config.executor == "ray":
        from server.executors.ray import RayExecutor

        return RayExecutor(config, store, cluster)
    # Standbys only for the built-in pipeline: a custom command starts every job cold.
    if config.standby <= 0 or config.pipeline_command:
        return LocalExecutor(cgroups=cgroups, kill_grace=config.kill_grace)
    return StandbyExecutor(
        count=config.standby,
        model=config.default_model,
        threads=config.default_threads,
        install_id=store.install_id,
        cgroups=cgroups,
        kill_grace=config.kill_grace,
    )


def containment(install_id: str, *, root: Path | None, memory_mb: int | None) -> Cgroups | None:
    """This install's cgroups, or None where they cannot be made (process groups then).

    A memory limit without cgroups cannot be kept, so it stops the start-up instead of
    being ignored.
    """
    try:
        cgroups = setup(install_id, root=root, memory_mb=memory_mb)
    except CgroupUnavailable as why:
        if memory_mb is not None:
            raise SystemExit(
                f"error: --job-memory-mb {memory_mb} needs cgroups, which cannot be used here: {why}"
            ) from None
        log.warning("containment: process groups and markers (no cgroups: %s)", why)
        return None
    memory = "v2" if cgroups.memory_v2 else "v1" if cgroups.memory_parent else "not accounted"
    log.info(
        "containment: one cgroup per job under %s (memory: %s, limit: %s)",
        cgroups.parent,
        memory,
        f"{memory_mb} MiB" if memory_mb is not None else "none",
    )
    return cgroups
