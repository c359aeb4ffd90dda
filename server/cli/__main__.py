"""python -m server.cli: the transcriptor command."""

import sys

from server.cli import main

sys.exit(main())
