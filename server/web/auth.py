"""Who may get in: the access token, and same-origin checks for state changes."""

from __future__ import annotations

import hmac
import logging
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_middlewares import Middleware

from server.config import is_loopback_name
from server.web.errors import ApiError, Handler
from server.web.node import NODE_PREFIX

COOKIE_NAME = "transcriptor_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def presented_token(request: web.Request) -> tuple[str | None, bool]:
    """The token the request carries, and whether it came in the query string."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    if "token" in request.query:
        return request.query["token"], True
    return request.cookies.get(COOKIE_NAME), False


def token_middleware(token: str) -> Middleware:
    expected = token.encode()

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(NODE_PREFIX):
            return await handler(request)  # a cluster node: its job's own secret is checked there
        given, from_query = presented_token(request)
        # Constant-time compare, so response timing tells nothing about the token.
        if given is None or not hmac.compare_digest(given.encode(), expected):
            raise ApiError(401, "a valid access token is required (?token=… or Bearer header)")
        if from_query and request.method == "GET" and not request.path.startswith(("/api/", "/ws")):
            # A page opened from the printed URL: remember the token, drop it from the URL.
            query = request.rel_url.query.copy()
            del query["token"]
            location = request.rel_url.with_query(query)
            response = web.HTTPSeeOther(location=str(location))
            response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="Strict", path="/")
            raise response
        return await handler(request)

    return check_token


def same_origin(request: web.Request) -> bool:
    """True when the request has no Origin (scripts, curl) or comes from this server."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return bool(parts.netloc) and parts.netloc.lower() == request.host.lower()


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse cross-site state changes and cross-site websockets."""
    changes_state = request.method not in SAFE_METHODS or request.path in ("/ws", "/v1/realtime")
    if changes_state and not same_origin(request):
        raise ApiError(403, "cross-origin request refused")
    return await handler(request)


def loopback_host(request: web.Request) -> bool:
    """True when the request's Host names loopback: 127.x.x.x, ::1, localhost, *.localhost."""
    return is_loopback_name(urlsplit(f"//{request.host}").hostname or "")


@web.middleware
async def loopback_host_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Without a token, answer only requests addressed to a loopback name.

    A web page whose own domain is made to resolve to 127.0.0.1 (DNS rebinding) reaches
    an open loopback server with Origin and Host both its own, so the Origin check passes;
    its Host is what gives it away. Jupyter guards the same way.
    """
    if not loopback_host(request):
        raise ApiError(403, "without a token this server answers only to 127.0.0.1 or localhost")
    return await handler(request)


class QuietAccessLogger(AbstractAccessLogger):
    """Access log without query strings, so a `?token=` never reaches a log file."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.1fms',
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
