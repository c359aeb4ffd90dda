"""Small child programs for tests that need real processes. Each is a CLI script:

    python <script> --help

sleeper.py SECONDS               print "ready PID", sleep
ignore_term.py SECONDS           ignore SIGTERM, print "ready PID", sleep
forker.py N SECONDS [--ignore-term]
                                 fork N grandchildren that sleep, print "child PID" for each
                                 and then "ready PID", sleep
setsid_grandchild.py SECONDS     fork a grandchild that calls setsid() (leaves the group),
                                 print "grandchild PID" then "ready PID", sleep
printer.py COUNT [--cr] [--long BYTES]
                                 print COUNT lines "line N" (--cr: end them with \\r only);
                                 --long: then BYTES of "x" with no line end
env_marker.py NAME               print the value of env var NAME (or "<unset>")
stdin_eof.py                     print "ready PID", read stdin to EOF, print "eof", exit 0
daemon.py PIDFILE SECONDS        double-fork, setsid, close stdio, exec with an empty env;
                                 print "daemon PID", the daemon writes PIDFILE and sleeps
churn.py SECONDS [--life S]      children one after another, each burning a core S s
hog.py MB SECONDS                allocate MB megabytes ("allocated N"), then sleep
"""

from __future__ import annotations

from pathlib import Path

CHILDREN_DIR = Path(__file__).resolve().parent


def script(name: str) -> str:
    """Path of the child script `name` (e.g. "sleeper.py")."""
    path = CHILDREN_DIR / name
    if not path.is_file():
        raise FileNotFoundError(path)
    return str(path)
