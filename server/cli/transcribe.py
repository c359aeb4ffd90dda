"""`transcriptor transcribe FILE`: run the pipeline as a child and show how it goes.

On a terminal, `[progress]` lines become one redrawn progress bar and segment lines print
their text; piped, every line passes through unchanged. The child runs in its own session
with `--lifeline` (stdin a pipe from us), so whatever ends this command, even SIGKILL, the
pipeline and its workers go too. Ctrl-C asks the pipeline to stop (it keeps the finished
segments); a second Ctrl-C sends SIGTERM, a third kills every process it started.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import signal
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from pipeline.protocol import Progress, Segment, parse_line, timestamp
from server.executors.base import LocalHandle
from server.executors.drain import drain
from server.executors.local import LocalExecutor
from server.procs.kill import KillReport
from server.tasks import cancel_and_wait

COMMAND_ENV = "TRANSCRIPTOR_PIPELINE_COMMAND"


def build_parser() -> argparse.ArgumentParser:
    """The pipeline's own options, with --out-dir made optional."""
    from pipeline.args import build_parser as pipeline_parser

    parser = argparse.ArgumentParser(
        prog="transcriptor transcribe",
        description="Transcribe one audio or video file with the pipeline, without a "
        "server. On a terminal it draws a progress bar and prints each segment as it is "
        "transcribed; piped, it prints the pipeline's lines unchanged. Ctrl-C stops it "
        "and keeps the finished segments (transcript.partial.json); press it twice to "
        "force. Exits with the pipeline's exit code.",
        epilog="Exit codes: 0 done, 1 internal failure, 2 bad input, option or model, "
        "130 interrupted, 143 stopped by SIGTERM.",
        parents=[pipeline_parser()],
        add_help=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for action in parser._actions:
        if action.dest == "out_dir":
            action.required = False
            action.default = None
            action.help = "directory for the transcript files (default: ./NAME-transcript)"
    return parser


def child_argv(argv: Sequence[str], args: argparse.Namespace) -> list[str]:
    """The command line the pipeline gets: the user's own, plus --out-dir and --lifeline."""
    command = shlex.split(os.environ.get(COMMAND_ENV, "")) or [sys.executable, "-m", "pipeline"]
    extra: list[str] = []
    if args.out_dir is None:
        extra += ["--out-dir", f"{Path(args.input).stem or 'audio'}-transcript"]
    if not args.lifeline:
        extra.append("--lifeline")
    return [*command, *argv, *extra]


class Plain:
    """Piped: each line exactly as the pipeline wrote it."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.broken = False

    def write(self, data: bytes) -> None:
        if self.broken:
            return  # the reader left (`| head`); the pipeline still finishes its files
        try:
            self.out.write(data)
            self.out.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.broken = True

    def line(self, raw: bytes) -> None:
        self.write(raw)

    def notice(self, text: str) -> None:
        print(f"transcriptor: {text}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        pass


class Terminal(Plain):
    """A one-line progress bar redrawn with \\r, with the other lines printed above it."""

    def __init__(self, out: BinaryIO) -> None:
        super().__init__(out)
        self.bar = ""

    def _text(self, text: str) -> None:
        clear = "\r\x1b[K" if self.bar else ""
        redraw = self.bar if self.bar else ""
        self.write((clear + text + "\n" + redraw).encode())

    def line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        event = parse_line(text)
        if isinstance(event, Progress):
            self.bar = render_bar(event, shutil.get_terminal_size().columns)
            self.write(("\r\x1b[K" + self.bar).encode())
        elif isinstance(event, Segment):
            self._text(f"{timestamp(event.start)} → {timestamp(event.end)}  {event.text}")
        else:
            self._text(text)

    def notice(self, text: str) -> None:
        self._text(f"transcriptor: {text}")

    def finish(self) -> None:
        if self.bar:
            self.write(b"\r\x1b[K")
            self.bar = ""


def render_bar(progress: Progress, columns: int) -> str:
    figures = f" {100 * progress.fraction:5.1f}%  {progress.done_seconds:.1f}/{progress.total_seconds:.1f} s"
    width = max(10, min(50, columns - len(figures) - 3))
    filled = round(width * progress.fraction)
    return "[" + "#" * filled + "." * (width - filled) + "]" + figures


async def pump(executor: LocalExecutor, handle: LocalHandle, output: Plain) -> None:
    """Hand each line of the pipeline's output to output, through the executor."""
    async for line in executor.lines(handle):
        output.line(line.encode("utf-8", "replace") + b"\n")


async def run(argv: list[str], output: Plain) -> int:
    """Run the pipeline through the local executor, the one way anything starts it."""
    executor = LocalExecutor()
    marker = f"cli-{uuid.uuid4().hex}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        handle = await executor.start(0, argv, marker=marker, env=env, own_stderr=True)
    except OSError as error:
        output.notice(f"cannot start {argv[0]}: {error}")
        return 1
    process = handle.spawned.process
    loop = asyncio.get_running_loop()
    interrupts = 0
    killing: set[asyncio.Task[KillReport]] = set()

    def interrupted(signum: int) -> None:
        nonlocal interrupts
        interrupts += 1
        if process.returncode is not None:
            return
        if interrupts == 1:
            # What Ctrl-C does to the pipeline run by hand: stop, keep finished segments.
            sig = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM
            output.notice("stopping (press Ctrl-C again to force)")
            process.send_signal(sig)
        elif interrupts == 2:
            output.notice("sending SIGTERM (press Ctrl-C again to kill)")
            process.send_signal(signal.SIGTERM)
        else:
            output.notice("killing every process it started")
            task = asyncio.ensure_future(executor.kill(handle, grace=0))
            killing.add(task)
            task.add_done_callback(killing.discard)

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for signum in handled:
        loop.add_signal_handler(signum, interrupted, signum)
    reader = asyncio.create_task(pump(executor, handle, output))

    async def leftovers() -> None:
        # The pipeline is gone but something it started still holds its stdout.
        report = await executor.kill(handle, grace=0)
        output.notice(f"stopped what the pipeline left behind: {report.reason}")

    try:
        await drain(executor, handle, reader, leftovers=leftovers)
        code = (await executor.wait(handle)).code
        await asyncio.gather(*killing, return_exceptions=True)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        executor.release(handle)
        if not reader.done():
            await cancel_and_wait(reader)
        output.finish()
    return code if code >= 0 else 128 - code


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    args = build_parser().parse_args(argv)
    out = sys.stdout.buffer
    output = Terminal(out) if sys.stdout.isatty() else Plain(out)
    return asyncio.run(run(child_argv(argv, args), output))
