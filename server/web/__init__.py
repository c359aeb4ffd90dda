"""The HTTP and websocket surface; it knows jobs only through the runner."""
