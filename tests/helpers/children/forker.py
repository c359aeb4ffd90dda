"""Fork N grandchildren that sleep SECONDS; print "child PID" for each, then "ready PID".

The grandchildren stay in this process's group. With --ignore-term, all of them and this
process ignore SIGTERM.
"""

import argparse
import os
import signal
import time

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("n", type=int)
parser.add_argument("seconds", type=float)
parser.add_argument("--ignore-term", action="store_true")
args = parser.parse_args()
if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
for _ in range(args.n):
    pid = os.fork()
    if pid == 0:
        time.sleep(args.seconds)
        os._exit(0)
    print(f"child {pid}", flush=True)
print(f"ready {os.getpid()}", flush=True)
time.sleep(args.seconds)
