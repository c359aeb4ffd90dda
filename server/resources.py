"""Where the files beside the code live: schema.sql, templates/ and static/.

In a checkout (and an editable install) they sit at the top of the repository. `pip
install .` copies them to `<prefix>/share/transcriptor/` (pyproject's data-files), since
they are not inside a Python package.
"""

from __future__ import annotations

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
_INSTALLED = Path(sys.prefix) / "share" / "transcriptor"


def resource_path(name: str) -> Path:
    """The checkout's copy of `name` when there is one, else the installed copy."""
    local = _CHECKOUT / name
    return local if local.exists() else _INSTALLED / name
