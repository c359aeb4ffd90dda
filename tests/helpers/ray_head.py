"""A real Ray head on loopback for the Ray executor tests, on free ports, in its own temp dir.

It is started with `ray start --head --block` in a new session and stopped by signalling
only what is provably its own: the `ray start` process's descendants, and processes whose
command line names this head's temp dir (never `ray stop`, which stops every Ray on the
machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.helpers.audio import REPO
from tests.helpers.server_proc import free_port

START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0


@dataclass
class RayHead:
    address: str  # the dashboard's job API, http://127.0.0.1:PORT
    temp_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path


def ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def node_env() -> dict[str, str]:
    """What a node with transcriptor installed has: this Python first on PATH, the code importable."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _dashboard_up(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_head() -> RayHead:
    # Short path: Ray's unix sockets live under the temp dir and sun_path is 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="rayt", dir="/tmp"))
    dashboard_port = free_port()
    log_path = temp_dir / "ray-start.log"
    argv = [
        ray_bin(), "start", "--head", "--block",
        "--num-cpus", "2",
        "--disable-usage-stats",
        "--include-dashboard", "true",
        "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard_port),
        "--port", str(free_port()),
        "--node-ip-address", "127.0.0.1",
        "--ray-client-server-port", str(free_port()),
        "--dashboard-agent-listen-port", str(free_port()),
        "--object-store-memory", str(100 * 1024 * 1024),
        "--temp-dir", str(temp_dir),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=node_env(), start_new_session=True
        )
    head = RayHead(f"http://127.0.0.1:{dashboard_port}", temp_dir, proc, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while not _dashboard_up(head.address):
        if proc.poll() is not None or time.monotonic() > deadline:
            output = log_path.read_text(errors="replace")[-3000:]
            stop_head(head)
            raise RuntimeError(f"the Ray head did not come up:\n{output}")
        time.sleep(0.25)
    return head


def _owned(head: RayHead) -> list[psutil.Process]:
    """The head's processes: descendants of `ray start`, and anything naming its temp dir."""
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(head.proc.pid)
        for child in root.children(recursive=True):
            found[child.pid] = child
    marker = str(head.temp_dir)
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and any(marker in part for part in proc.info["cmdline"] or ()):
                found[proc.pid] = proc
    return list(found.values())


def stop_head(head: RayHead) -> None:
    owned = _owned(head)
    with contextlib.suppress(ProcessLookupError):
        head.proc.send_signal(signal.SIGTERM)
    for proc in owned:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _gone, alive = psutil.wait_procs(owned, timeout=STOP_TIMEOUT / 2)
    stragglers = [*alive, *_owned(head)]
    for proc in stragglers:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(stragglers, timeout=STOP_TIMEOUT / 2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.proc.wait(timeout=STOP_TIMEOUT / 2)
    if head.proc.poll() is None:
        head.proc.kill()
        head.proc.wait()
    shutil.rmtree(head.temp_dir, ignore_errors=True)


@contextlib.contextmanager
def ray_head() -> Iterator[RayHead]:
    head = start_head()
    try:
        yield head
    finally:
        stop_head(head)
