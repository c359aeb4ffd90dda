"""Print "ready PID", then sleep SECONDS."""

import argparse
import os
import time

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("seconds", type=float)
args = parser.parse_args()
print(f"ready {os.getpid()}", flush=True)
time.sleep(args.seconds)
