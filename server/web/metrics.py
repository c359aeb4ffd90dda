"""GET /metrics: the server in Prometheus' text format, through prometheus_client.

Each app has its own CollectorRegistry (several apps in one test process never collide).
Labels never carry job ids: a series per job would grow without bound. The runner calls
`Metrics` at a job's turning points (server/jobs/observer.py); gauges and the log line
count are read when scraped, so nothing hot pays for them.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server import keys

# A job takes seconds to hours; a queue wait from nothing to hours.
DURATION_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))
WAIT_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, float("inf"))


class _LiveCollector(Collector):
    """What is read from the running app at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        runner = self.app.get(keys.RUNNER)
        log_lines = CounterMetricFamily(
            "transcriptor_log_lines", "Output lines read from every job's program"
        )
        log_lines.add_metric([], runner.stats().log_lines if runner else 0)
        yield log_lines
        samples = [j.metrics for j in runner.live_jobs() if j.metrics] if runner else []
        cpu = GaugeMetricFamily(
            "transcriptor_jobs_cpu_percent", "CPU use of every running job's processes (100 = one core)"
        )
        cpu.add_metric([], sum(s.cpu_percent for s in samples))
        yield cpu
        memory = GaugeMetricFamily(
            "transcriptor_jobs_memory_bytes", "Resident memory of every running job's processes"
        )
        memory.add_metric([], sum(s.memory_bytes for s in samples))  # bytes, as sampled
        yield memory


class Metrics:
    """The app's registry and instruments; the runner's JobObserver."""

    def __init__(self, app: web.Application) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # this server's CPU seconds, memory, open fds
        self.submitted = Counter(
            "transcriptor_jobs_submitted", "Jobs submitted", ["source"], registry=registry
        )
        self.finished = Counter(
            "transcriptor_jobs_finished", "Jobs ended, by final status", ["status"], registry=registry
        )
        self.duration = Histogram(
            "transcriptor_job_duration_seconds",
            "Time from a job's start to its end",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "transcriptor_queue_wait_seconds",
            "Time a job waited in the queue before it started",
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.audio = Counter(
            "transcriptor_audio_seconds", "Seconds of audio transcribed by completed jobs", registry=registry
        )
        running = Gauge("transcriptor_jobs_running", "Jobs running now", registry=registry)
        running.set_function(lambda: app[keys.RUNNER].stats().running if keys.RUNNER in app else 0)
        queued = Gauge("transcriptor_jobs_queued", "Jobs waiting in the queue", registry=registry)
        queued.set_function(lambda: app[keys.RUNNER].stats().queued if keys.RUNNER in app else 0)
        sockets = Gauge("transcriptor_websocket_clients", "Open websockets", registry=registry)
        sockets.set_function(lambda: len(app[keys.SOCKETS]))
        registry.register(_LiveCollector(app))

    # -- JobObserver -------------------------------------------------------------------

    def job_submitted(self, source: str) -> None:
        self.submitted.labels(source=source).inc()

    def job_started(self, queue_wait_seconds: float | None) -> None:
        if queue_wait_seconds is not None:  # None: queued by a previous instance
            self.queue_wait.observe(queue_wait_seconds)

    def job_finished(self, status: str, run_seconds: float | None, audio_seconds: float) -> None:
        self.finished.labels(status=status).inc()
        if run_seconds is not None:  # None: cancelled while queued, it never ran
            self.duration.observe(run_seconds)
        if audio_seconds > 0:
            self.audio.inc(audio_seconds)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[keys.METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
