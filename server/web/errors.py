"""Errors a request can end with, and the one middleware that renders them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A refusal with a status and a message meant for the person who sent the request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/ws"


def _error_response(request: web.Request, status: int, message: str) -> web.Response:
    if _wants_json(request):
        return web.json_response({"error": message}, status=status)
    page = (
        "<!doctype html><meta charset=utf-8><title>{status}</title>"
        "<link rel=stylesheet href=/static/style.css>"
        "<main class=error-page><h1>{status}</h1><p>{message}</p><p><a href=/>Home</a></p></main>"
    )
    text = page.format(status=status, message=_escape(message))
    return web.Response(text=text, status=status, content_type="text/html")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return _error_response(request, error.status, error.message)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        message = error.text if error.text and not error.text.startswith(str(error.status)) else error.reason
        response = _error_response(request, error.status, message or error.reason)
        for name in ("WWW-Authenticate", "Allow"):
            if name in error.headers:
                response.headers[name] = error.headers[name]
        return response
    except ConnectionError as error:
        # The client went away mid-request (an upload cut off): not a server error, so one
        # line rather than a traceback and a 500. The answer goes nowhere; aiohttp drops it.
        log.info("%s %s: client went away (%s)", request.method, request.path, error)
        return _error_response(request, 400, "the connection was lost before the request ended")
    except Exception:
        log.exception("unhandled error for %s %s", request.method, request.path)
        return _error_response(request, 500, "internal server error")
