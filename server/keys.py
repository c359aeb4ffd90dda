"""Typed keys for the state the app shares; the one place they are declared."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from server.channels import Channels
    from server.config import Config
    from server.monitor import Monitor
    from server.processes import ProcessManager
    from server.runner import Runner
    from server.store import Store

CONFIG = web.AppKey("config", "Config")
STORE = web.AppKey("store", "Store")
PROCESSES = web.AppKey("processes", "ProcessManager")
CHANNELS = web.AppKey("channels", "Channels")
RUNNER = web.AppKey("runner", "Runner")
MONITOR = web.AppKey("monitor", "Monitor")
SOCKETS = web.AppKey("sockets", "weakref.WeakSet[web.WebSocketResponse]")
