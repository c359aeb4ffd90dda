"""Typed keys for the state the app shares; the one place they are declared."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.config import Config
    from server.executors.build import Built
    from server.jobs.aftercare import Aftercare
    from server.jobs.channels import Channels
    from server.jobs.orphans import OrphanReaper
    from server.jobs.runner import Runner
    from server.store import Store
    from server.web.lagprobe import LagProbe
    from server.web.metrics import Metrics

CONFIG: web.AppKey[Config] = web.AppKey("config")
STORE: web.AppKey[Store] = web.AppKey("store")
REAPER: web.AppKey[OrphanReaper] = web.AppKey("reaper")
CHANNELS: web.AppKey[Channels] = web.AppKey("channels")
RUNNER: web.AppKey[Runner] = web.AppKey("runner")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
LAG_PROBE: web.AppKey[LagProbe] = web.AppKey("lag_probe")
# What runs jobs: the executor, its containment (cgroup or process group), the standbys.
EXECUTORS: web.AppKey[Built] = web.AppKey("executors")
SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse[bool]]] = web.AppKey("sockets")
# Settles each ended job: its transcript into the database, its webhooks queued.
AFTERCARE: web.AppKey[Aftercare] = web.AppKey("aftercare")
