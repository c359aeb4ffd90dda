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
# Installed, the folder above server/ is site-packages, where another package may well
# have put a `templates/` of its own: only a folder with our pyproject.toml is a checkout.
_IN_CHECKOUT = (_CHECKOUT / "pyproject.toml").is_file()


def resource_path(name: str) -> Path:
    """The checkout's copy of `name` in a checkout, else the installed copy."""
    return (_CHECKOUT if _IN_CHECKOUT else _INSTALLED) / name
