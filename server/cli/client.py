"""Talking to a running server over its HTTP API, with every failure turned into a CliError."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from server.cli.common import (
    EXIT_AUTH,
    EXIT_ERROR,
    EXIT_NO_JOB,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    TOKEN_ENV,
    CliError,
)

CONNECT_TIMEOUT = 5.0
# A stop waits for the job's processes to die: up to the server's kill grace, and then some.
REQUEST_TIMEOUT = 60.0


def normalize_url(text: str) -> str:
    """http://host:port with no trailing slash; a bare host:port gets http://."""
    url = text.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"--server {text!r} is not an http(s) URL such as http://127.0.0.1:8080", EXIT_USAGE)
    return url


def unreachable(url: str, why: object) -> CliError:
    return CliError(
        f"cannot reach the transcriptor server at {url} ({why}); "
        "is it running? Start it with `transcriptor serve`, or pass --server URL",
        EXIT_UNREACHABLE,
    )


def auth_error(url: str, token: str | None) -> CliError:
    if token:
        return CliError(
            f"the server at {url} refused the access token; check --token or {TOKEN_ENV}",
            EXIT_AUTH,
        )
    return CliError(
        f"the server at {url} requires an access token; pass --token TOKEN or set {TOKEN_ENV}",
        EXIT_AUTH,
    )


class ServerClient:
    """One server: base URL and token. Use as `async with ServerClient.connect(...) as c`."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str | None) -> None:
        self.session = session
        self.url = url
        self.token = token

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, token: str | None) -> AsyncIterator[ServerClient]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT, sock_connect=CONNECT_TIMEOUT)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            yield cls(session, normalize_url(url), token)

    async def request(
        self, method: str, path: str, *, job_id: int | None = None, **params: str
    ) -> dict[str, Any]:
        """The JSON answer of METHOD path; 404 on a job's path means no such job (exit 4)."""
        try:
            async with self.session.request(method, self.url + path, params=params) as response:
                body = await response.read()
                status = response.status
        except aiohttp.InvalidURL as error:
            raise CliError(f"--server {self.url!r} is not a valid URL ({error})", EXIT_USAGE) from None
        except (aiohttp.ClientConnectionError, TimeoutError) as error:
            raise unreachable(self.url, describe(error)) from None
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = None
        if status == 401:
            raise auth_error(self.url, self.token)
        if not isinstance(data, dict):
            raise CliError(
                f"{self.url} answered {path} with HTTP {status} and no JSON; "
                "is --server really a transcriptor server?"
            )
        message = str(data.get("error") or f"HTTP {status}")
        if status == 404 and job_id is not None:
            raise CliError(f"no job {job_id} on {self.url}", EXIT_NO_JOB)
        if status >= 500:
            raise CliError(f"{message} (HTTP {status} from {self.url})", EXIT_ERROR)
        if status >= 400:
            raise CliError(message, EXIT_ERROR)  # the server's own words, e.g. "already ended"
        return data

    @asynccontextmanager
    async def websocket(self) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """The /ws socket, carrying the token in the Authorization header."""
        ws_url = "ws" + self.url[len("http") :] + "/ws"
        try:
            ws = await self.session.ws_connect(
                ws_url, heartbeat=30.0, timeout=aiohttp.ClientWSTimeout(ws_close=5.0)
            )
        except aiohttp.WSServerHandshakeError as error:
            if error.status == 401:
                raise auth_error(self.url, self.token) from None
            raise CliError(f"{self.url} refused the websocket (HTTP {error.status})") from None
        except (aiohttp.ClientConnectionError, TimeoutError) as error:
            raise unreachable(self.url, describe(error)) from None
        try:
            yield ws
        finally:
            await ws.close()


def describe(error: BaseException) -> str:
    """A short reason for a connection failure: 'connection refused', 'timed out', ..."""
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, aiohttp.ClientConnectorError):
        cause = error.os_error
        if isinstance(cause, OSError) and cause.errno and not isinstance(cause, socket.gaierror):
            return os.strerror(cause.errno).lower()  # "connection refused"
        reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
        return str(reason).lower()
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return str(error) or type(error).__name__
