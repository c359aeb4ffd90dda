"""Start short-lived children one after another for SECONDS, each burning a core for
LIFE seconds (0.3 by default), so no sampler of the process tree ever catches one.
Prints "ready PID" first and "churned N" at the end."""

import argparse
import os
import subprocess
import sys
import time

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("seconds", type=float)
parser.add_argument("--life", type=float, default=0.3)
args = parser.parse_args()
print(f"ready {os.getpid()}", flush=True)
burn = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass\n"
end = time.monotonic() + args.seconds
count = 0
while time.monotonic() < end:
    subprocess.run([sys.executable, "-c", burn, str(args.life)], check=True)
    count += 1
print(f"churned {count}", flush=True)
