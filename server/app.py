"""create_app(config): the app, its routes, and the resources it owns.

Each resource is a cleanup_ctx generator (set up, yield, tear down), so teardown runs only
for what was set up, in reverse order: the monitor stops before the runner kills its jobs,
and the runner before the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import WSCloseCode, web
from aiohttp.web_middlewares import Middleware

from server import keys
from server.config import Config
from server.executors.base import Executor
from server.executors.build import build
from server.jobs.aftercare_ctx import aftercare_ctx, follow_endings
from server.jobs.channels import Channels
from server.jobs.monitor import Monitor
from server.jobs.orphans import OrphanReaper
from server.jobs.reattach import reattach_jobs
from server.jobs.runner import Runner
from server.procs.identity import read_identity
from server.resources import resource_path
from server.store import Store
from server.tasks import cancel_and_wait
from server.web.auth import QuietAccessLogger, loopback_host_middleware, origin_middleware, token_middleware
from server.web.errors import error_middleware
from server.web.lagprobe import LagProbe
from server.web.metrics import Metrics
from server.web.routes import setup_routes
from server.web.uploads import remove_partial_uploads
from server.web.views import page_headers

log = logging.getLogger(__name__)
TEMPLATES_DIR = resource_path("templates")


def create_app(config: Config, *, executor: Executor[Any] | None = None) -> web.Application:
    middlewares: list[Middleware] = [error_middleware, origin_middleware]
    if config.token:
        middlewares.append(token_middleware(config.token))
    else:
        middlewares.append(loopback_host_middleware)
    app = web.Application(middlewares=middlewares)
    app[keys.CONFIG] = config
    app[keys.SOCKETS] = weakref.WeakSet()
    app[keys.METRICS] = Metrics(app)
    aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True
    )
    setup_routes(app)
    app.cleanup_ctx.append(_store_ctx)
    # Before the runner, so it outlives the endings the runner's shutdown records.
    app.cleanup_ctx.append(aftercare_ctx)
    app.cleanup_ctx.append(_runner_ctx(executor))
    app.cleanup_ctx.append(_monitor_ctx)
    if config.loop_lag_interval > 0:
        app.cleanup_ctx.append(_lag_probe_ctx)
    app.on_startup.append(follow_endings)  # after every cleanup_ctx has set up
    app.on_shutdown.append(_close_websockets)
    app.on_response_prepare.append(page_headers)
    return app


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    for folder in (config.data_dir, config.uploads_dir, config.logs_dir, config.outputs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for path in remove_partial_uploads(config.uploads_dir):
        log.warning("removed %s, an upload a previous instance left unfinished", path.name)
    store = await Store.open(config.db_path)
    app[keys.STORE] = store
    try:
        yield
    finally:
        await store.close()


def _runner_ctx(
    executor: Executor[Any] | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def runner_ctx(app: web.Application) -> AsyncIterator[None]:
        config, store = app[keys.CONFIG], app[keys.STORE]
        me = read_identity(os.getpid())
        assert me is not None, "a running process can read its own /proc entry"
        instance_id = await store.register_instance(
            pid=me.pid, start_ticks=me.start_ticks, boot_id=me.boot_id
        )
        built = await asyncio.to_thread(build, config, store, executor)
        app[keys.EXECUTORS] = built
        remote = None
        if built.cluster is not None:
            from server.jobs.ray_orphans import RayOrphans

            # A server that runs Ray jobs re-attaches them; else Ray rows are settled.
            remote = RayOrphans(built.cluster, store, adopts=built.ray is not None)
        reaper = OrphanReaper(
            store, kill_grace=config.kill_grace, instance_id=instance_id, cgroups=built.cgroups, remote=remote
        )
        app[keys.REAPER] = reaper
        # Settle what a previous instance left running before taking new work; what its
        # going away interrupted is queued again, to be resumed (--resume-interrupted).
        reports = await reaper.reap(
            config.orphan_timeout, live_instance_ids={instance_id}, resume=config.resume_interrupted
        )
        for report in reports:
            log.warning("job %s: %s", report.job_id, report.reason)
        channels = Channels()
        runner = Runner(
            config, store, built.executor, channels, instance_id=instance_id, observer=app[keys.METRICS]
        )
        app[keys.CHANNELS] = channels
        app[keys.RUNNER] = runner
        if built.ray is not None:
            # Jobs a cluster kept running through a crash are followed again first.
            await reattach_jobs(runner, store, built.ray, "ray", instance_id=instance_id)
        await runner.start()
        built.begin()
        try:
            yield
        finally:
            await runner.shutdown()
            await built.close()

    return runner_ctx


async def _monitor_ctx(app: web.Application) -> AsyncIterator[None]:
    runner = app[keys.RUNNER]
    monitor = Monitor(
        app[keys.CONFIG],
        app[keys.STORE],
        runner,
        app[keys.EXECUTORS].executor,
        app[keys.REAPER],
        instance_id=runner.instance_id,
    )
    async with _owned_task(monitor.run(), "monitor"):
        yield


async def _lag_probe_ctx(app: web.Application) -> AsyncIterator[None]:
    probe = LagProbe(app[keys.CONFIG].loop_lag_interval)
    app[keys.LAG_PROBE] = probe
    async with _owned_task(probe.run(), "loop-lag-probe"):
        yield


@contextlib.asynccontextmanager
async def _owned_task(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run `work` as a task the app owns for as long as the block lasts."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        await cancel_and_wait(task)


WS_CLOSE_SECONDS = 2.0


async def _close_websockets(app: web.Application) -> None:
    """Say goodbye to every socket at once, each bounded in time.

    A client that stopped reading would make close() wait forever to flush its frames;
    past the bound the server's own shutdown drops the connection.
    """

    async def close(ws: web.WebSocketResponse[bool]) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(WS_CLOSE_SECONDS):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    open_sockets = app[keys.SOCKETS]
    sockets = list(open_sockets)
    await asyncio.gather(*(close(ws) for ws in sockets))


SHUTDOWN_TIMEOUT = 3.0


def serve(config: Config) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = f"[{config.host}]" if ":" in config.host else config.host
    url = f"http://{host}:{config.port}/"
    if config.token:
        url += f"?token={config.token}"
    print(f"transcriptor serving {config.data_dir} at {url}", flush=True)
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        access_log_class=QuietAccessLogger,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        print=None,
    )
