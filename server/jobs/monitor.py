"""One background task: sample running jobs, write heartbeats, reap orphans."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from server.config import Config
from server.executors.base import Executor
from server.jobs.orphans import OrphanReaper
from server.jobs.runner import Runner
from server.procs.sampler import MIB

if TYPE_CHECKING:
    from server.store import Store

log = logging.getLogger(__name__)


class Monitor:
    def __init__(
        self,
        config: Config,
        store: Store,
        runner: Runner,
        executor: Executor[Any],
        reaper: OrphanReaper,
        *,
        instance_id: str,
    ) -> None:
        self.config = config
        self.store = store
        self.runner = runner
        self.executor = executor
        self.reaper = reaper
        self.instance_id = instance_id
        self._last_heartbeat = 0.0

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.sample_once()
                if started - self._last_heartbeat >= self.config.heartbeat_interval:
                    self._last_heartbeat = started
                    await self.heartbeat_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The monitor must outlive any one bad sample or a busy database.
                log.exception("monitor pass failed")
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.05, self.config.metrics_interval - elapsed))

    async def sample_once(self) -> None:
        live = [(r, r.live_handle) for r in self.runner.runs()]
        running = [r for r, handle in live if handle is not None]
        if not running:
            return
        handles = [handle for _r, handle in live if handle is not None]
        samples = await self.executor.sample(handles)
        ids = self.runner.running_ids()
        for run in running:
            sample = samples.get(run.job_id)
            if sample is None or run.job_id not in ids:
                continue
            run.metrics = sample
            run.channel.publish({"type": "metrics", "job": run.job_id, **sample.fields()})

    async def heartbeat_once(self) -> None:
        owned = [r for r in self.runner.runs() if r.live_handle is not None]
        await self.store.touch_instance(self.instance_id)
        await self.store.update_heartbeats([r.job_id for r in owned])
        samples = [
            (r.job_id, r.metrics.cpu_percent, r.metrics.memory_bytes / MIB, r.metrics.num_processes)
            for r in owned
            if r.metrics and r.metrics.running
        ]
        if samples:
            await self.store.record_metrics_many(samples)
        await self.reap_orphans()

    async def reap_orphans(self) -> None:
        reports = await self.reaper.reap(
            self.config.orphan_timeout,
            live_instance_ids={self.instance_id},
            exclude_job_ids=self.runner.running_ids(),  # live: a job started meanwhile counts
        )
        for report in reports:
            log.warning("job %s: %s", report.job_id, report.reason)
            await self.runner.settled(report.job_id)

