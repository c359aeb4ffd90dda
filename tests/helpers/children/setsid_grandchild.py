"""Fork a grandchild that calls setsid() (leaving our session and group) and sleeps SECONDS.

Prints "grandchild PID" once the grandchild is in its new session, then "ready PID", and
sleeps SECONDS itself.
"""

import argparse
import os
import time

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("seconds", type=float)
args = parser.parse_args()
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read_end)
    os.setsid()
    os.write(write_end, b"x")
    os.close(write_end)
    time.sleep(args.seconds)
    os._exit(0)
os.close(write_end)
os.read(read_end, 1)
print(f"grandchild {pid}", flush=True)
print(f"ready {os.getpid()}", flush=True)
time.sleep(args.seconds)
