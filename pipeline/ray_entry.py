"""`python -m pipeline.ray_entry`: the entrypoint of a transcriptor job on a Ray node.

A node shares no filesystem with the server, so this wrapper fetches the job's audio over
HTTP (with the job's one-time secret), runs the pipeline on it in a temporary folder, and
prints the transcript files as one `[result]` line when the pipeline ends: Ray keeps a
job's log, so the result survives a server that was down when the job finished.

It also owns the pipeline's --lifeline pipe (the pipeline dies with it), passes SIGTERM
on, and prints the CPU and memory of its process tree as `[metrics]` lines.
Nothing here imports the server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from pipeline.protocol import NodeMetrics, format_metrics, format_result

SECRET_ENV = "TRANSCRIPTOR_JOB_SECRET"
SECRET_HEADER = "X-Transcriptor-Job-Secret"
EXIT_BAD_NODE = 2
FETCH_TIMEOUT = 60.0
# The server cuts a local job's lines at this many bytes; a node's are cut the same way.
MAX_LINE_BYTES = 65536


def transcriptor_version() -> str:
    """The installed transcriptor's version; the server and its nodes must agree on it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transcriptor")
    except PackageNotFoundError:
        return "unknown"


def audio_url(server: str, job_id: int) -> str:
    return f"{server.rstrip('/')}/api/node/jobs/{job_id}/audio"


class Output:
    """stdout shared by the relay and the metrics thread: whole lines, flushed at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline.ray_entry")
    parser.add_argument("--server", required=True, help="URL where this node reaches the server")
    parser.add_argument("--job", type=int, required=True)
    parser.add_argument("--expect-version", required=True, help="the server's transcriptor version")
    parser.add_argument("--report-metrics", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument(
        "--pipeline-command", default="", help="shell-quoted command (default: this Python -m pipeline)"
    )
    parser.add_argument("options", nargs=argparse.REMAINDER, help="-- then the pipeline's options")
    return parser


def split_output(raw: bytes, max_bytes: int = MAX_LINE_BYTES) -> list[str]:
    """One chunk of the pipeline's output ending at \n, as the lines the server would
    make of it for a local job: split at a lone \r too, long lines cut, not UTF-8 -> U+FFFD."""
    text = raw[:-1] if raw.endswith(b"\n") else raw
    if text.endswith(b"\r"):
        text = text[:-1]  # \r\n ends one line
    lines = []
    for part in text.split(b"\r"):
        while len(part) > max_bytes:
            cut = max_bytes
            while cut > max_bytes - 3 and (part[cut] & 0xC0) == 0x80:
                cut -= 1  # not inside a UTF-8 character
            lines.append(part[:cut].decode("utf-8", errors="replace"))
            part = part[cut:]
        lines.append(part.decode("utf-8", errors="replace"))
    return lines


def fetch_audio(server: str, job_id: int, secret: str, folder: Path) -> Path:
    request = urllib.request.Request(audio_url(server, job_id), headers={SECRET_HEADER: secret})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
        disposition = response.headers.get("Content-Disposition", "")
        match = re.search(r'filename="input(\.[A-Za-z0-9]{1,10})"', disposition)
        path = folder / ("input" + (match.group(1) if match else ""))
        with path.open("wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    return path


def report_metrics(say: Output, interval: float, stop: threading.Event) -> None:
    """Every `interval` seconds, the CPU and memory of this process and its descendants."""
    import psutil

    me = psutil.Process()
    known: dict[int, psutil.Process] = {}
    while not stop.wait(interval):
        cpu = 0.0
        memory = count = 0
        for proc in [me, *me.children(recursive=True)]:
            # Keep each Process object: cpu_percent() is the delta since its last call.
            proc = known.setdefault(proc.pid, proc)
            with contextlib.suppress(psutil.Error):
                cpu += proc.cpu_percent(None)
                memory += proc.memory_info().rss
                count += 1
        say(format_metrics(NodeMetrics(cpu, memory, count)))


def collect_outputs(out_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out_dir.glob("transcript*")) if p.is_file()}


def run(args: argparse.Namespace, say: Output) -> int:
    mine = transcriptor_version()
    if mine != args.expect_version:
        say(
            f"error: version mismatch: this Ray node runs transcriptor {mine}, the server "
            f"{args.expect_version}; install transcriptor {args.expect_version} on the nodes"
        )
        return EXIT_BAD_NODE
    # Out of the environment before anything starts, so no child and no log sees it.
    secret = os.environ.pop(SECRET_ENV, "")
    say(f"transcriptor {mine} on Ray node {socket.gethostname()}")
    command = shlex.split(args.pipeline_command) or [sys.executable, "-m", "pipeline"]
    options = [o for o in args.options if o != "--"]
    with tempfile.TemporaryDirectory(prefix="transcriptor-") as temp:
        folder = Path(temp)
        try:
            audio = fetch_audio(args.server, args.job, secret, folder)
        except (OSError, urllib.error.URLError) as error:
            say(f"error: cannot fetch the audio from {audio_url(args.server, args.job)}: {error}")
            return 1
        out_dir = folder / "out"
        # Same process group: Ray's stop signals the whole tree; the pipe is the lifeline.
        child = subprocess.Popen(
            [*command, str(audio), "--out-dir", str(out_dir), *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

        def on_term(signum: int, _frame: FrameType | None) -> None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        stop = threading.Event()
        if args.report_metrics > 0:
            threading.Thread(
                target=report_metrics, args=(say, args.report_metrics, stop), daemon=True
            ).start()
        assert child.stdout is not None
        for raw in child.stdout:
            for line in split_output(raw):
                say(line)
        code = child.wait()
        stop.set()
        files = collect_outputs(out_dir) if out_dir.is_dir() else {}
        if files:
            say(format_result(files))
    return 128 - code if code < 0 else code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args, Output())


if __name__ == "__main__":
    sys.exit(main())
