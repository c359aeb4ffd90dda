"""Become an untraceable daemon: fork twice, setsid, close stdio, exec with an empty
environment (so no job marker), write our pid to PIDFILE, sleep SECONDS.

Prints "daemon PID" on the original stdout before detaching, so a test knows what to
watch. It ends by itself after SECONDS, so even where it escapes it does not run forever.
"""

import argparse
import os
import sys

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("pidfile")
parser.add_argument("seconds", type=float)
args = parser.parse_args()
read_end, write_end = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.close(read_end)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.write(write_end, str(os.getpid()).encode())
        os.close(write_end)
        code = (
            "import os, sys, time\n"
            "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\n"
            "os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
            "time.sleep(float(sys.argv[2]))\n"
        )
        os.execve(sys.executable, [sys.executable, "-c", code, args.pidfile, str(args.seconds)], {})
    os._exit(0)
os.close(write_end)
pid = os.read(read_end, 32).decode()
print(f"daemon {pid}", flush=True)
