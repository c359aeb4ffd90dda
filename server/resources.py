"""Where the files beside the code live: schema.sql, templates/ and static/.

In a checkout they sit at the top of the repository. A wheel ships them inside the
package as `server/_data/` (pyproject's package-dir), found through importlib.resources,
so every install scheme finds them (--user, --prefix, --target, a system pip).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
# Installed, the folder above server/ is site-packages, where another package may well
# have put a `templates/` of its own: only a folder with our pyproject.toml is a checkout.
_IN_CHECKOUT = (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "schema.sql").is_file()


def resource_path(name: str) -> Path:
    """The checkout's copy of `name` in a checkout, else the installed package's copy."""
    if _IN_CHECKOUT:
        return _CHECKOUT / name
    # A wheel installs plain files, so the traversable is a real path on disk.
    return Path(str(resources.files("server._data").joinpath(name)))
