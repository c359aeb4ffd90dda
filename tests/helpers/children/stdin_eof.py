"""Print "ready PID", read stdin until EOF (it must be a pipe), print "eof", exit 0."""

import os
import stat
import sys

mode = os.fstat(0).st_mode
print(f"ready {os.getpid()} {'pipe' if stat.S_ISFIFO(mode) else 'not-a-pipe'}", flush=True)
sys.stdin.buffer.read()
print("eof", flush=True)
