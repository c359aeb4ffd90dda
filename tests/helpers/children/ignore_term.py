"""Ignore SIGTERM, print "ready PID", then sleep SECONDS (only SIGKILL ends it early)."""

import argparse
import os
import signal
import time

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("seconds", type=float)
args = parser.parse_args()
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(f"ready {os.getpid()}", flush=True)
time.sleep(args.seconds)
