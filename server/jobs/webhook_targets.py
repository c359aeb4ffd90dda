"""Which per-job webhook URLs the server will call.

A per-job URL is an outgoing request chosen by whoever uploads, so it may not point at
this server itself (a job that calls the API that made it) or at link-local addresses
(cloud metadata services live at 169.254.169.254) unless the operator allows it. The
server-wide --webhook-url is the operator's own choice and is never checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import psutil
from yarl import URL

from server.config import Config

MAX_URL_LENGTH = 2048
_ANY = {"", "0.0.0.0", "::"}


class WebhookURLError(ValueError):
    """The URL is refused; the message says why."""


class UnresolvableError(WebhookURLError):
    """The URL's host name does not resolve (now)."""


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _local_addresses() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6) and (ip := _ip(address.address)):
                found.add(ip)
    return found


def _is_this_server(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, config: Config) -> bool:
    if ip.is_loopback or ip.is_unspecified:
        return True
    listening = config.host.strip("[]")
    if listening in _ANY:
        return ip in _local_addresses()
    return ip == _ip(listening)


def parse_webhook_url(raw: str) -> URL:
    """The URL if it is a plain absolute http(s) URL, else WebhookURLError."""
    if len(raw) > MAX_URL_LENGTH:
        raise WebhookURLError(f"webhook_url is longer than {MAX_URL_LENGTH} characters")
    try:
        url = URL(raw)
    except ValueError as e:
        raise WebhookURLError(f"webhook_url is not a URL: {e}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise WebhookURLError("webhook_url must be an absolute http:// or https:// URL")
    if url.user or url.password:
        raise WebhookURLError("webhook_url must not carry a user name or password")
    return url


async def check_job_webhook(raw: str, config: Config) -> str:
    """The per-job URL, checked (see the module's docstring); raises WebhookURLError."""
    url = parse_webhook_url(raw)
    if config.allow_local_webhooks:
        return str(url)
    assert url.host is not None and url.port is not None  # parse_webhook_url checked both
    public = URL(config.public_url) if config.public_url else None
    if public is not None and (public.host, public.port) == (url.host, url.port):
        raise WebhookURLError("webhook_url points at this server itself")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise UnresolvableError(f"webhook_url's host {url.host!r} cannot be resolved ({e})") from None
    for info in infos:
        ip = _ip(str(info[4][0]))
        if ip is None:
            continue
        if ip.is_link_local:
            raise WebhookURLError(f"webhook_url points at a link-local address ({ip})")
        if url.port == config.port and await asyncio.to_thread(_is_this_server, ip, config):
            raise WebhookURLError("webhook_url points at this server itself")
    return str(url)
