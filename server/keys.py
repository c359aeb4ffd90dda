"""Typed keys for the state the app shares; the one place they are declared."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.channels import Channels
    from server.config import Config
    from server.lagprobe import LagProbe
    from server.monitor import Monitor
    from server.processes import ProcessManager
    from server.runner import Runner
    from server.store import Store

CONFIG: web.AppKey[Config] = web.AppKey("config")
STORE: web.AppKey[Store] = web.AppKey("store")
PROCESSES: web.AppKey[ProcessManager] = web.AppKey("processes")
CHANNELS: web.AppKey[Channels] = web.AppKey("channels")
RUNNER: web.AppKey[Runner] = web.AppKey("runner")
MONITOR: web.AppKey[Monitor] = web.AppKey("monitor")
LAG_PROBE: web.AppKey[LagProbe] = web.AppKey("lag_probe")
SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse[bool]]] = web.AppKey("sockets")
