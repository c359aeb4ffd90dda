from __future__ import annotations

from tests.server.conftest import make_config, tone

__all__ = ["make_config", "tone"]
