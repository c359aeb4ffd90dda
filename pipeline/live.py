"""`python -m pipeline ADDRESS --live --out-dir DIR`: transcribe one live session.

The server listens on a unix socket (ADDRESS; `@name` is Linux's abstract namespace) and
feeds it the session's audio as frames: one kind byte, a 4-byte big-endian length, the
payload. `A` is pcm16 mono at 24 kHz, `C` commits the utterance, `X` clears it, `S` is
JSON settings ({"language", "turn_detection", "prompt"}). End of stream ends the session:
the utterance in progress is finished, the transcript written, and the exit code is 0.

Each event is one stdout line, `[live] {json}`; each completed utterance is also a
`[segment ...]` line, and the transcript files are rewritten after it, so a session
killed at any moment leaves every finished utterance on disk.

Decoding runs in a worker process (a standby's loaded one when it fits), one utterance
window at a time, on its own thread so the socket is always read.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import settings as defaults
from pipeline.formats import FORMATS, write_transcript
from pipeline.live_audio import Resampler, TurnDetection
from pipeline.live_session import LiveSession
from pipeline.messages import DecodeUtterance, Failed, Loaded, UtteranceText
from pipeline.protocol import format_segment
from pipeline.settings import Settings
from pipeline.transcript import Segment

if TYPE_CHECKING:
    from pipeline.standby import Standby
    from pipeline.worker import WarmWorker

LIVE_PREFIX = "[live] "
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline ADDRESS --live")
    add = parser.add_argument
    add("address", help="the server's unix socket; @name for the abstract namespace")
    add("--live", action="store_true", required=True)
    add("--out-dir", type=Path, required=True)
    add("--model", default=defaults.DEFAULT_MODEL)
    add("--allow-download", action="store_true")
    add("--language", default="auto")
    add("--threads", type=int, default=1, help="the worker's threads; 0 means 1 (one per session)")
    add("--beam-size", type=int, default=5, help="beam width of an utterance's final decode (partials: 1)")
    add("--lifeline", action="store_true")
    return parser


class _Out:
    """stdout lines, whole, from any thread; a vanished reader ends nothing else."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

    def event(self, event: dict[str, Any]) -> None:
        self(LIVE_PREFIX + json.dumps(event, ensure_ascii=False))


def _connect(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect("\0" + address[1:] if address.startswith("@") else address)
    return sock


def _read_exact(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


class Decoder:
    """The worker process that holds the model, asked one window at a time."""

    def __init__(self, warm: WarmWorker, language: str | None, beam_size: int) -> None:
        self.warm = warm
        self.language = language
        self.beam_size = beam_size
        self.prompt: str | None = None

    def __call__(self, samples: np.ndarray, final: bool) -> str:
        beam = self.beam_size if final else 1
        self.warm.connection.send(DecodeUtterance(samples, self.language, beam, self.prompt))
        while True:  # warnings the worker forwards are not this decode's answer
            event = self.warm.connection.recv()
            if isinstance(event, UtteranceText):
                return event.text
            if isinstance(event, Failed):
                raise RuntimeError(event.error)


def _worker(settings: Settings, standby: Standby | None, say: _Out) -> WarmWorker:
    """A loaded worker: the standby's when it loaded the same model, else a new one."""
    from pipeline.worker import WarmWorker, start_worker

    if standby is not None and standby.warm is not None:
        if standby.warm.settings.model_path == settings.model_path:
            say(f"live: using the standby's loaded worker ({standby.warm.settings.threads} threads)")
            return standby.warm
    process, connection = start_worker(multiprocessing.get_context("spawn"), 1, settings)
    event = connection.recv()
    while not isinstance(event, Loaded | Failed):
        event = connection.recv()
    if isinstance(event, Failed):
        raise RuntimeError(f"the worker could not load the model: {event.error}")
    say(f"live: model loaded in {event.seconds:.2f} s")
    return WarmWorker(process, connection, settings, event.seconds)


def _transcript_writer(out_dir: Path, language: str, say: _Out) -> Any:
    segments: list[Segment] = []

    def on_completed(event: dict[str, Any]) -> None:
        text = str(event["transcript"]).strip()
        if text:
            segments.append(Segment(event["start"], event["end"], text))
            say(format_segment(event["start"], event["end"], text))
        write_transcript(out_dir, segments, {"language": language, "live": True}, FORMATS)

    return on_completed


def main(argv: Sequence[str], *, standby: Standby | None = None) -> int:
    args, _ignored = _parser().parse_known_args(list(argv))
    say = _Out()
    worker: list[WarmWorker] = []

    def die(code: int) -> None:
        for warm in worker:
            warm.process.kill()
        sys.stdout.flush()
        os._exit(code)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        say(f"stopped by {signal.Signals(signum).name}")
        die(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.lifeline or standby is not None:
        from pipeline import lifeline

        def parent_gone() -> None:
            say("stopped: parent gone (stdin closed)")
            lifeline.kill_everything(lambda: [w.process.pid for w in worker])

        if standby is not None:
            standby.on_eof = parent_gone
        else:
            lifeline.watch_stdin(parent_gone)

    from pipeline.models import ModelError, resolve_model

    try:
        model_path = resolve_model(args.model, allow_download=args.allow_download)
    except ModelError as error:
        say(f"error: {error}")
        return EXIT_BAD_INPUT
    try:
        sock = _connect(args.address)
    except OSError as error:
        # A session's socket lives as long as its websocket: gone, the session is over
        # (a live job left queued by a server that stopped ends here).
        say(f"error: the live session's socket {args.address} is gone ({error.strerror or error})")
        return EXIT_BAD_INPUT
    language = None if args.language == "auto" else args.language
    settings = Settings(
        Path(), args.out_dir, model=args.model, model_path=model_path, threads=max(1, args.threads), vad=False
    )
    try:
        worker.append(_worker(settings, standby, say))
    except (RuntimeError, EOFError) as error:
        say(f"error: {error}")
        return EXIT_FAILED
    decoder = Decoder(worker[0], language, max(1, args.beam_size))
    return _serve(sock, decoder, args.out_dir, args.language, say)


def _serve(sock: socket.socket, decoder: Decoder, out_dir: Path, language: str, say: _Out) -> int:
    on_completed = _transcript_writer(out_dir, language, say)
    on_completed_lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        # The files first: a client that saw `completed` and hangs up at once finds the
        # utterance in the transcript of its cancelled job.
        if event["event"] == "completed":
            with on_completed_lock:
                on_completed(event)
        say.event(event)

    session = LiveSession(emit, TurnDetection())
    failed: list[BaseException] = []

    def decode_all() -> None:
        try:
            session.decode_loop(decoder)
        except BaseException as error:  # reported once the reader stops
            failed.append(error)
            sock.shutdown(socket.SHUT_RDWR)

    thread = threading.Thread(target=decode_all, name="live-decoder", daemon=True)
    thread.start()
    on_completed({"transcript": "", "start": 0.0, "end": 0.0})  # an empty session has files too
    say.event({"event": "ready"})
    _read_frames(sock, session, decoder, say)
    session.close()
    thread.join()
    if failed:
        say(f"error: decoding failed: {failed[0]}")
        return EXIT_FAILED
    say(f"live: session ended after {session.position / 16000:.2f} s of audio")
    return EXIT_OK


# A line this often, so a session hearing only silence is not taken for a stalled job
# (the server's --stall-timeout watches for output).
LISTENING_NOTE_SECONDS = 30


def _read_frames(sock: socket.socket, session: LiveSession, decoder: Decoder, say: _Out) -> None:
    resample = Resampler()
    next_note = LISTENING_NOTE_SECONDS * 16000
    while (header := _read_exact(sock, 5)) is not None:
        if session.position >= next_note:
            say(f"live: listening, {session.position / 16000:.0f} s of audio so far")
            next_note += LISTENING_NOTE_SECONDS * 16000
        kind, size = header[:1], int.from_bytes(header[1:], "big")
        payload = _read_exact(sock, size) if size else b""
        if payload is None:
            return
        if kind == b"A":
            session.feed(resample(payload))
        elif kind == b"C":
            session.commit()
        elif kind == b"X":
            session.clear()
        elif kind == b"S":
            options = json.loads(payload)
            session.configure(TurnDetection.from_dict(options.get("turn_detection")))
            language = options.get("language")
            decoder.language = None if language in (None, "", "auto") else str(language)
            decoder.prompt = options.get("prompt") or None
