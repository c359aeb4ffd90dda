"""Allocate (and touch) MB megabytes, 8 MB at a time, printing "allocated N" as it goes,
then "holding" and sleep SECONDS. Under a smaller memory cap the kernel kills it."""

import argparse
import os
import time

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("mb", type=int)
parser.add_argument("seconds", type=float)
args = parser.parse_args()
print(f"ready {os.getpid()}", flush=True)
blocks = []
for n in range(0, args.mb, 8):
    blocks.append(bytearray(os.urandom(1)) * (8 * 1024 * 1024))
    print(f"allocated {n + 8}", flush=True)
print("holding", flush=True)
time.sleep(args.seconds)
