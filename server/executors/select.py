"""Which executor runs jobs, from the settings; Ray is imported only when chosen."""

from __future__ import annotations

from dataclasses import dataclass

from server.config import Config
from server.executors.base import Executor
from server.executors.local import LocalExecutor
from server.jobs.orphans import RemoteOrphans
from server.store import Store


@dataclass
class Chosen:
    executor: Executor
    remote: RemoteOrphans | None  # the orphan rule for Ray rows, when a cluster is known
    reattach: bool  # follow Ray jobs a previous instance left running


def choose_executor(
    config: Config, store: Store, given: Executor | None = None, *, local: Executor | None = None
) -> Chosen:
    local = local or LocalExecutor()
    if config.executor != "ray" and not config.ray_address:
        return Chosen(given or local, None, reattach=False)
    from server.executors.ray import RayExecutor
    from server.executors.ray_cluster import RayCluster
    from server.executors.ray_orphans import RayOrphans

    assert config.ray_address is not None, "config.check() requires it with --executor ray"
    cluster = RayCluster(config.ray_address)
    if given is None and config.executor == "ray":
        given = RayExecutor(config, store, cluster)
    reattach = isinstance(given, RayExecutor)
    # Without a Ray executor, Ray rows a previous instance left are settled, not followed.
    return Chosen(given or local, RayOrphans(cluster, store, adopts=reattach), reattach)
