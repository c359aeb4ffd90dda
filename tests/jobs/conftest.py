"""The app-level fixtures (make_config, tone) are shared with tests/server."""

from tests.server.conftest import make_config, tone

__all__ = ["make_config", "tone"]
