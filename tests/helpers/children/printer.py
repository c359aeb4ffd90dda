"""Print COUNT lines "line N"; --cr ends them with a lone \r like a progress bar; --long
BYTES then writes BYTES of "x" with no line end."""

import argparse
import sys

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("count", type=int)
parser.add_argument("--cr", action="store_true")
parser.add_argument("--long", type=int, default=0)
args = parser.parse_args()
end = b"\r" if args.cr else b"\n"
out = sys.stdout.buffer
out.write(b"".join(b"line %d%s" % (i, end) for i in range(args.count)))
if args.long:
    block = b"x" * 65536
    left = args.long
    while left > 0:
        out.write(block[:left])
        left -= len(block)
out.flush()
