"""Errors a request can end with, and the one middleware that renders them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A refusal with a status and a message meant for the person who sent the request."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param  # the form field at fault, for OpenAI's error shape


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path in ("/ws", "/metrics")


# OpenAI's error types by status, so its SDKs raise the matching exception with our message.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
}
# OpenAI documents 400, 401, 403, 404, 413 (a body over its size limit), 429, 500 and 503
# (platform.openai.com/docs/guides/error-codes). Where our API answers with a status it
# never sends, /v1/ answers with the one it would, so SDKs raise the class their users
# catch: a file that cannot be decoded, or is empty, is 400 invalid_request_error
# (BadRequestError; 422 was UnprocessableEntityError), and a full disk 503 ("try later").
_OPENAI_STATUS = {422: 400, 507: 503}


def openai_status(status: int) -> int:
    return _OPENAI_STATUS.get(status, status)


def openai_error(status: int, message: str, param: str | None = None) -> dict[str, object]:
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _error_response(
    request: web.Request, status: int, message: str, param: str | None = None
) -> web.Response:
    if request.path.startswith("/v1/"):
        status = openai_status(status)
        return web.json_response(openai_error(status, message, param), status=status)
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
        return _error_response(request, error.status, error.message, error.param)
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
