"""Die with the parent.

Two layers, because neither alone is enough:

- The leader, with --lifeline, watches stdin. The server keeps it open as a pipe, so EOF
  means the server is gone (even after SIGKILL, when no signal reaches us). The leader
  then kills its process group, or just its workers when it does not lead a group (run
  by hand from a shell, the group is the shell's job and not ours to kill).
- Each worker arms PR_SET_PDEATHSIG against the leader, so the workers die with the
  leader whatever kills it. PDEATHSIG on the leader alone would leave multiprocessing
  workers behind, and it only works because workers are started with "spawn": with
  forkserver they would be children of the fork server instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def arm_parent_death_signal(expected_parent: int, sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` when our parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    # The parent may have died before prctl ran; then we were re-parented already.
    if os.getppid() != expected_parent:
        os._exit(1)


def leads_own_group() -> bool:
    return os.getpgid(0) == os.getpid()


def kill_everything(worker_pids: Callable[[], list[int]]) -> None:
    """SIGKILL the workers and ourselves; the whole group when we lead it."""
    for pid in worker_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leads_own_group():
        os.killpg(0, signal.SIGKILL)
    os._exit(137)


def watch_stdin(on_eof: Callable[[], None]) -> threading.Thread:
    """Call `on_eof` from a daemon thread when stdin reaches end of file."""

    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass  # the parent sends nothing; whatever it sends is ignored
        except OSError:
            pass  # a closed or invalid stdin means the same as EOF
        on_eof()

    thread = threading.Thread(target=watch, name="lifeline", daemon=True)
    thread.start()
    return thread
