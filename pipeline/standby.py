"""`python -m pipeline --standby`: a warm pipeline waiting for its one job.

Started by the server before any job needs it. It lowers its own priority (so warming
never slows a running job; the server raises it back when it hands over a job), imports
everything, loads the model in worker 1, and prints the ready line. Then it reads ONE
line on stdin, `{"argv": [...], "env": {...}}`, sets `env` (the job's marker) before
starting anything, and runs exactly as `python -m pipeline ARGV` would, giving the job its
loaded worker when the job's settings fit it. Then it exits.

stdin stays open after the job line: it is the lifeline. EOF at any point, waiting or
working, means the server is gone, and the standby kills its group.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline import lifeline, messages, protocol
from pipeline import settings as defaults
from pipeline.argtypes import whole_number
from pipeline.worker import WarmWorker, start_worker

# Niceness while warming and waiting; CFS then gives a running job about 10× its share.
DEFAULT_NICE = 10


class Standby:
    """The stdin reader (job line, then lifeline) and the warm worker it hands over."""

    def __init__(self) -> None:
        self.warm: WarmWorker | None = None
        self.on_eof: Callable[[], None] = self._die
        self._job: queue.Queue[bytes | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._read, name="lifeline", daemon=True)
        self._thread.start()

    def _die(self) -> None:
        lifeline.kill_everything(lambda: [] if self.warm is None else [self.warm.process.pid])

    def _read(self) -> None:
        buf = b""
        delivered = False
        try:
            while data := os.read(0, 65536):
                if delivered:
                    continue  # after the job line the server sends nothing; ignore it
                buf += data
                if b"\n" in buf:
                    self._job.put(buf.split(b"\n", 1)[0])
                    delivered = True
        except OSError:
            pass  # a closed or invalid stdin means the same as EOF
        if not delivered:
            self._job.put(None)
        self.on_eof()

    def next_job(self) -> bytes | None:
        """The job line, or None once stdin is closed (then on_eof is killing us)."""
        return self._job.get()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline --standby")
    parser.add_argument("--model", default=defaults.DEFAULT_MODEL, help="the model to load")
    parser.add_argument(
        "--threads", type=whole_number(0), default=0, help="CPU threads of the worker (0: all cores)"
    )
    parser.add_argument("--nice", type=whole_number(0), default=DEFAULT_NICE, help="niceness while waiting")
    return parser


def _start_warming(model: str, threads: int, say: Callable[[str], None]) -> WarmWorker | None:
    """Start worker 1 loading the model; None if the model cannot be used. The returned
    worker is not loaded yet: `_finish_warming` waits for that."""
    from pipeline.models import ModelError, resolve_model
    from pipeline.settings import Settings, fit_to_machine, usable_cores

    try:
        model_path = resolve_model(model)
    except ModelError as error:
        say(f"error: {error}")
        return None
    # The settings a default job gets: one process with the server's threads.
    settings = Settings(Path(), Path(), model=model, model_path=model_path, threads=threads)
    settings = fit_to_machine(settings, usable_cores())
    process, connection = start_worker(multiprocessing.get_context("spawn"), 1, settings)
    return WarmWorker(process, connection, settings, load_seconds=0.0)


def _finish_warming(warm: WarmWorker, say: Callable[[str], None]) -> WarmWorker | None:
    event: messages.Event = messages.WorkerWarning(1, "")
    while isinstance(event, messages.WorkerWarning):
        if event.text:
            say(f"warning: worker 1: {event.text}")
        try:
            event = warm.connection.recv()
        except EOFError:
            code = warm.process.join(1) or warm.process.exitcode
            event = messages.Failed(1, f"worker died (exit code {code})")
    if not isinstance(event, messages.Loaded):
        reason = event.error if isinstance(event, messages.Failed) else repr(event)
        say(f"error: warming up failed: {reason}")
        return None
    warm.load_seconds = event.seconds  # the worker's own count, imports and load
    return warm


def serve(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    os.nice(args.nice)
    standby = Standby()  # watch the lifeline before the slow part

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    # The worker first: its start-up and model load are the longest part, and the imports
    # a job needs here run beside them.
    started = _start_warming(args.model, args.threads, say)
    from pipeline import cli, transcribe  # noqa: F401
    from pipeline.windows import preload

    preload()  # the leader's VAD, so the first window is cut at once

    if started is None:
        return cli.EXIT_BAD_INPUT
    standby.warm = _finish_warming(started, say)
    if standby.warm is None:
        return cli.EXIT_BAD_INPUT
    warmed_at = time.monotonic()
    say(f"{protocol.STANDBY_READY} {args.model}, loaded in {standby.warm.load_seconds:.2f} s")
    line = standby.next_job()
    if line is None:
        return cli.EXIT_FAILED  # on_eof is killing the group
    job = json.loads(line)
    # Before anything is started for the job, so its processes carry the job's marker.
    os.environ.update({str(k): str(v) for k, v in job.get("env", {}).items()})
    say(f"warm start: took the job after {time.monotonic() - warmed_at:.2f} s ready")
    try:
        return cli.main([str(a) for a in job["argv"]], standby=standby)
    finally:
        if standby.warm is not None:
            standby.warm.discard()  # the job never reached its workers
