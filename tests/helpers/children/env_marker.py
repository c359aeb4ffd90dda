"""Print the value of the environment variable NAME, or "<unset>"."""

import argparse
import os

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("name")
args = parser.parse_args()
print(os.environ.get(args.name, "<unset>"), flush=True)
