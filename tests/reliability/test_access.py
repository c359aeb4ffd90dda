"""Who may get in, against a real server: tokens, the printed URL, cookies, origins."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.helpers.forms import multipart
from tests.helpers.server_proc import ServerProcess
from tests.helpers.waiting import wait_for

TOKEN = "reliability-token-0123456789abcdef"
PAGES = ["/", "/jobs/1", "/api/health", "/api/jobs", "/api/jobs/1", "/api/jobs/1/logs", "/api/jobs/1/log"]


def check_token_everywhere(server: ServerProcess, token: str, tone: Path) -> dict[str, int]:
    """Every page, API call and the websocket: 401 without the token, in with it."""
    seen = {}
    for path in PAGES:
        for presented in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {token}x"}):
            response = server.request("GET", path, headers=presented, auth=False)
            assert response.status == 401, (path, presented, response.status)
        assert (
            server.request("GET", path + ("&" if "?" in path else "?") + "token=nope", auth=False).status
            == 401
        )
        response = server.request("GET", path, headers={"Authorization": f"Bearer {token}"}, auth=False)
        assert response.status in (200, 404), (path, response.status)
        seen[path] = response.status
        sep = "&" if "?" in path else "?"
        via_query = server.request("GET", f"{path}{sep}token={token}", auth=False)
        assert via_query.status in (200, 303, 404), (path, via_query.status)
    body, content_type = multipart({"on_disconnect": "keep"}, filename="t.wav", content=tone.read_bytes())
    refused = server.request(
        "POST", "/api/jobs", body=body, headers={"Content-Type": content_type}, auth=False
    )
    assert refused.status == 401
    assert not list((server.data_dir / "uploads").iterdir())
    assert server.request("POST", "/api/jobs/1/stop", auth=False).status == 401
    return seen


async def check_ws_token(server: ServerProcess, token: str) -> None:
    async with aiohttp.ClientSession() as session:
        for url in (server.ws_url, server.ws_url + "?token=wrong"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(url)
            assert refused.value.status == 401
        for kwargs in (
            {"url": server.ws_url + f"?token={token}"},
            {"url": server.ws_url, "headers": {"Authorization": f"Bearer {token}"}},
        ):
            async with session.ws_connect(**kwargs) as ws:
                await ws.send_json({"type": "ping"})
                assert "pong" in (await ws.receive(timeout=5)).data


async def test_token_flag_guards_everything_and_never_reaches_the_logs(start_server, tone, record):
    server = start_server("--token", TOKEN, fake=["--lines", "3"], token=None)
    seen = await asyncio.to_thread(check_token_everywhere, server, TOKEN, tone)
    await check_ws_token(server, TOKEN)
    # A page opened with ?token= sets a cookie and sends the browser to the clean address.
    opened = server.request("GET", f"/jobs/7?token={TOKEN}&tab=log", auth=False)
    assert opened.status == 303, opened.status
    assert TOKEN not in opened.headers["location"] and "tab=log" in opened.headers["location"]
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
    jar = cookie.split(";", 1)[0]
    assert server.request("GET", "/", headers={"Cookie": jar}, auth=False).status == 200
    assert server.request("GET", "/api/jobs", headers={"Cookie": jar}, auth=False).status == 200
    # A job run with the token, so its log and database get a chance to leak it.
    server.token = TOKEN
    job = server.upload(tone, on_disconnect="keep")
    assert server.wait_final(job["id"])["status"] == "completed"
    server.stop()
    leaks = token_leaks(server, TOKEN)
    # The one place the token may appear: the ready-to-open URL printed at start.
    assert leaks == {"stdout (the printed URL)": 1}, leaks
    record(checked_paths=seen, token_found_in=leaks)


def token_leaks(server: ServerProcess, token: str) -> dict[str, int]:
    leaks: dict[str, int] = {}
    out = server.stdout_path.read_text(errors="replace")
    err = server.stderr_path.read_text(errors="replace")
    printed = [line for line in out.splitlines() if token in line]
    if printed:
        assert all(line.startswith("transcriptor serving") for line in printed), printed
        leaks["stdout (the printed URL)"] = len(printed)
    if token in err:
        leaks["stderr"] = err.count(token)
    for path in server.data_dir.rglob("*"):
        if path.is_file() and token.encode() in path.read_bytes():
            leaks[str(path.relative_to(server.data_dir))] = 1
    with sqlite3.connect(server.data_dir / "transcriptor.db") as conn:
        for (dump,) in [(line,) for line in conn.iterdump()]:
            if token in dump:
                leaks["database"] = leaks.get("database", 0) + 1
    return leaks


def test_token_from_environment(start_server, tone):
    server = start_server(fake=["--lines", "3"], env={"TRANSCRIPTOR_TOKEN": TOKEN}, token=None)
    check_token_everywhere(server, TOKEN, tone)
    # The flag wins over the variable.
    server.stop()
    flagged = start_server(
        "--token", "flag-token-abc", fake=["--lines", "3"], env={"TRANSCRIPTOR_TOKEN": TOKEN}, token=None
    )
    assert (
        flagged.request("GET", "/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"}, auth=False).status
        == 401
    )
    assert (
        flagged.request(
            "GET", "/api/jobs", headers={"Authorization": "Bearer flag-token-abc"}, auth=False
        ).status
        == 200
    )


async def test_non_loopback_without_token_generates_one_and_prints_the_url(start_server, tone, record):
    server = start_server(fake=["--lines", "3"], host="0.0.0.0", wait=False, token=None)

    def printed_url() -> str | None:
        found = re.search(r"(http://\S+\?token=\S+)", server.stdout_path.read_text(errors="replace"))
        return found.group(1) if found else None

    url = wait_for(printed_url, 30, "the printed URL")
    token = urlsplit(url).query.removeprefix("token=")
    assert len(token) >= 20, url

    def refuses_without_token() -> bool:
        try:
            return server.request("GET", "/api/health", auth=False).status == 401
        except OSError:
            return False  # not listening yet

    wait_for(refuses_without_token, 30, "401 without the token")
    # Open the printed URL as a browser would (through 127.0.0.1, never another address).
    opened = server.request("GET", f"/?token={token}", auth=False)
    assert opened.status == 303
    jar = opened.headers["set-cookie"].split(";", 1)[0]
    assert server.request("GET", "/", headers={"Cookie": jar}, auth=False).status == 200
    await asyncio.to_thread(check_token_everywhere, server, token, tone)
    await check_ws_token(server, token)
    server.stop()
    leaks = token_leaks(server, token)
    assert leaks == {"stdout (the printed URL)": 1}, leaks
    record(printed_url=url.replace(token, "<token>"))


CROSS_SITE = [
    "http://evil.example",
    "null",
    "https://127.0.0.1.evil.example",
    "http://localhost.evil.example:80",
]


def test_cross_site_state_changes_are_refused(start_server, tone, record):
    server = start_server("--token", TOKEN, fake=["--lines", "100000", "--interval", "0.05"], token=TOKEN)
    job = server.upload(tone, on_disconnect="keep")
    server.wait_running(job["id"])
    opened = server.request("GET", f"/?token={TOKEN}", auth=False)
    jar = opened.headers["set-cookie"].split(";", 1)[0]
    refusals = {}
    for origin in [*CROSS_SITE, f"http://127.0.0.1:{server.port + 1}"]:
        # A cross-site HTML form: urlencoded, the victim's cookie attached, no Bearer.
        form = server.request(
            "POST",
            f"/api/jobs/{job['id']}/stop",
            body=b"x=1",
            headers={"Origin": origin, "Cookie": jar, "Content-Type": "application/x-www-form-urlencoded"},
            auth=False,
        )
        assert form.status == 403, (origin, form.status)
        refusals[origin] = form.error
        # Even with the token itself, a cross-site Origin is refused.
        assert server.request("POST", f"/api/jobs/{job['id']}/stop", headers={"Origin": origin}).status == 403
        body, content_type = multipart({}, filename="t.wav", content=tone.read_bytes())
        upload = server.request(
            "POST",
            "/api/jobs",
            body=body,
            headers={"Origin": origin, "Content-Type": content_type, "Cookie": jar},
        )
        assert upload.status == 403
        assert server.job(job["id"])["status"] == "running"
    assert len(server.jobs()) == 1
    assert len(list((server.data_dir / "uploads").iterdir())) == 1
    # The same request from the server's own page is allowed.
    same = server.request(
        "POST",
        f"/api/jobs/{job['id']}/stop",
        headers={"Origin": f"http://127.0.0.1:{server.port}", "Cookie": jar},
    )
    assert same.status == 200 and same.json()["status"] == "cancelled"
    record(refusals=refusals)


def test_dns_rebinding_host_cannot_stop_jobs_on_an_open_loopback_server(start_server, tone, record):
    """A page at http://evil.example:PORT whose name rebinds to 127.0.0.1: its Origin equals
    the Host it sends, so an Origin-equals-Host check alone lets it stop jobs on a server
    that has no token. Only loopback names may be served openly."""
    server = start_server(fake=["--lines", "100000", "--interval", "0.05"])
    job = server.upload(tone, on_disconnect="keep")
    server.wait_running(job["id"])
    evil = f"evil.example:{server.port}"
    response = server.request(
        "POST", f"/api/jobs/{job['id']}/stop", headers={"Host": evil, "Origin": f"http://{evil}"}
    )
    reading = server.request("GET", "/api/jobs", headers={"Host": evil})
    record(stop_status=response.status, read_status=reading.status)
    assert response.status in (403, 421), response.status
    assert reading.status in (403, 421), reading.status
    assert server.job(job["id"])["status"] == "running"
    server.stop_job(job["id"])
