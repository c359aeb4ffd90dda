"""The leader's loop: hand windows to workers, release segments in order, show progress.

Each worker holds at most one window per replica plus one waiting, so the reader (and
with it the memory) never runs far ahead. A window's segments are printed once it and
every earlier window are done, so what is printed is always everything before one point
of the file: the point a resumed run goes on from (resume.py), and what the server keeps
of a run it restarts.
Progress is the audio of the finished windows plus how far the others' segments reach;
a line is printed when it moves and at least every couple of seconds in any case, so a
healthy run is never silent for long.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait

from pipeline import messages, protocol
from pipeline.resume import Checkpoints
from pipeline.run import Run, WorkerFailed
from pipeline.transcript import Segment
from pipeline.windows import PIECE_SECONDS, Reader, Sizer, Window

Say = Callable[[str], None]
_POLL_SECONDS = 0.05
# A progress line at least this often, even when nothing moved (model load, a long batch).
_HEARTBEAT_SECONDS = 2.0
# Windows are sized so that one of them finishes about this often.
_UPDATE_SECONDS = 1.5


@dataclass
class _Flight:
    """A window handed to a worker (or finished and waiting to be released)."""

    window: Window
    reached: float = 0.0  # seconds of the window its segments cover so far
    found: list[Segment] = field(default_factory=list)
    finished: bool = False


class Collector:
    def __init__(self, run: Run, reader: Reader, sizer: Sizer, say: Say, load_began: float) -> None:
        self.run, self.reader, self.sizer, self.say = run, reader, sizer, say
        settings = run.settings
        self.replicas = max(1, settings.replicas)
        self.free: dict[int, int] = {}  # loaded worker -> windows it can take now
        self.flights: dict[int, _Flight] = {}  # window index -> its state, until released
        self.next_release = 0  # the earliest window not yet released
        self.reader_done = False
        self.finished_seconds = run.released_until  # audio of finished windows
        self.first_done = False
        self.rate: float | None = None  # speech seconds a replica decodes per second
        self.cap = (settings.batch_size or 1) * PIECE_SECONDS if settings.batched else 4 * PIECE_SECONDS
        self.load_began = load_began
        self.transcribe_began = time.monotonic()
        self.shown, self.shown_at = -1.0, 0.0
        self.checkpoints = Checkpoints(settings.out_dir)

    @property
    def complete(self) -> bool:
        return self.reader_done and not self.flights

    def loop(self) -> None:
        """Run until every window is released; raises WorkerFailed if a worker dies."""
        run = self.run
        self.progress()
        for worker, seconds in run.preloaded.items():
            self.on_loaded(worker, seconds, " before the job (warm start)")
        workers = dict(enumerate(run.workers, start=1))
        while not self.complete:
            self.hand_out()
            ready = wait(list(run.connections.values()), timeout=_POLL_SECONDS)
            by_connection = {id(c): n for n, c in run.connections.items()}
            for handle in ready:
                worker = by_connection[id(handle)]
                try:
                    event: messages.Event = run.connections[worker].recv()
                except EOFError:
                    code = workers[worker].exitcode
                    raise WorkerFailed(f"worker {worker} died (exit code {code})") from None
                self.on_event(event)
            if not ready:
                # A dead worker's pipe reads as EOF, which `wait` reports; this catches a
                # worker that is gone while something else still holds its pipe open.
                for number, process in workers.items():
                    gone = process.exitcode is not None and number in run.connections
                    if gone and not run.connections[number].poll():
                        raise WorkerFailed(f"worker {number} died (exit code {process.exitcode})")
            self.progress()
            self.checkpoint()
        run.timings["transcribe"] = time.monotonic() - self.transcribe_began
        self.shown = -1.0  # the total is now the decoded length: say so once more
        self.progress()

    def hand_out(self) -> None:
        """Give windows to workers with room, as long as the reader has them ready."""
        while not self.reader_done and self.free and max(self.free.values()) > 0:
            if self.flights and not self.first_done:
                return  # the first window decodes alone, on every core: the first text soonest
            try:
                item = self.reader.out.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, BaseException):
                raise item
            if item is None:
                self.reader_done = True
                self.run.duration = self.reader.decoded_seconds
                return
            flight = self.flights[item.index] = _Flight(item)
            if item.speech == []:
                self.finish(flight)  # silence: nothing to decode
                continue
            worker = max(self.free, key=lambda n: self.free[n])
            self.free[worker] -= 1
            window = item
            self.say(
                f"window {window.index + 1} [{protocol.timestamp(window.start)} - "
                f"{protocol.timestamp(window.end)}] started on worker {worker} "
                f"({window.speech_seconds:.1f} s of speech)"
            )
            self.run.connections[worker].send(
                messages.Transcribe(window.index, window.start, window.samples, window.speech)
            )

    def on_loaded(self, worker: int, seconds: float, before: str = "") -> None:
        run = self.run
        self.free[worker] = self.replicas + 1
        run.timings["model_load"] = max(run.timings.get("model_load", 0.0), seconds)
        self.say(f"worker {worker}: model loaded in {seconds:.2f} s{before}")
        if len(self.free) == len(run.workers):
            run.timings["startup"] = time.monotonic() - self.load_began
            self.transcribe_began = time.monotonic()

    def on_event(self, event: messages.Event) -> None:
        if isinstance(event, messages.Loaded):
            self.on_loaded(event.worker, event.seconds)
        elif isinstance(event, messages.SegmentFound):
            flight = self.flights[event.index]
            segment = Segment.from_dict(event.segment)
            flight.reached = max(flight.reached, min(segment.end, flight.window.end) - flight.window.start)
            flight.found.append(segment)
        elif isinstance(event, messages.WindowDone):
            self.on_window_done(event)
        elif isinstance(event, messages.WorkerWarning):
            self.say(f"warning: worker {event.worker}: {event.text}")
        elif isinstance(event, messages.Failed):
            raise WorkerFailed(f"worker {event.worker} failed: {event.error}")
        elif isinstance(event, messages.Exited):
            self.run.worker_peaks[event.worker] = event.peak_rss_bytes
            del self.run.connections[event.worker]

    def on_window_done(self, event: messages.WindowDone) -> None:
        flight = self.flights[event.index]
        window = flight.window
        self.free[event.worker] += 1
        self.run.language = self.run.language or event.language
        length = window.end - window.start
        speed = length / event.seconds if event.seconds > 0 else float("inf")
        self.say(
            f"window {window.index + 1} finished in {event.seconds:.2f} s ({speed:.1f}× real time)"
        )
        if event.seconds > 0 and window.speech_seconds > 0:
            rate = window.speech_seconds / event.seconds
            self.rate = rate if self.rate is None else (self.rate + rate) / 2
            # One window done every _UPDATE_SECONDS or so, all replicas busy.
            threads = self.replicas * len(self.run.workers)
            self.sizer.set_limit(max(PIECE_SECONDS, min(self.cap, self.rate * _UPDATE_SECONDS * threads)))
        self.finish(flight)

    def finish(self, flight: _Flight) -> None:
        """A window is done: release it and every finished one after it, in order."""
        flight.finished = self.first_done = True
        window = flight.window
        self.finished_seconds += window.end - window.start
        run = self.run
        while (head := self.flights.get(self.next_release)) is not None and head.finished:
            for segment in head.found:
                self.emit(segment)
            del self.flights[self.next_release]
            self.next_release += 1
            run.released_until = head.window.end

    def emit(self, segment: Segment) -> None:
        run = self.run
        if "first_segment" not in run.timings:
            run.timings["first_segment"] = time.monotonic() - run.started
        run.segments.append(segment)
        self.say(protocol.format_segment(segment.start, segment.end, segment.text))

    def progress(self) -> None:
        total = self.run.duration
        running = sum(f.reached for f in self.flights.values() if not f.finished)
        done = min(total, self.finished_seconds + running)
        now = time.monotonic()
        if done > self.shown or now - self.shown_at >= _HEARTBEAT_SECONDS:
            self.shown, self.shown_at = max(done, self.shown), now
            self.say(protocol.format_progress(self.shown, total))

    def checkpoint(self) -> None:
        run = self.run
        if self.checkpoints.due(run.released_until, len(run.segments)):
            self.checkpoints.write(run.segments, run.released_until, run.meta())
