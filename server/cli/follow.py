"""`transcriptor logs JOB -f`: the last N lines, then live ones, until the job ends.

It subscribes over /ws with no `since`, so the server replays what its buffer holds, then
sends a `ping`: the server answers in order, so every message before the `pong` is the
replay (plus perhaps a few live lines) and is cut to the last N; everything after is live.
Lines are printed by `seq`, so none is printed twice and none out of order.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from server.cli.client import ServerClient
from server.cli.common import EXIT_ERROR, EXIT_NO_JOB, EXIT_OK, EXIT_UNREACHABLE, CliError
from server.cli.jobs import describe_ending
from server.jobs.state import FINAL_STATES

FINAL = frozenset(status.value for status in FINAL_STATES)


@dataclass
class Follower:
    """Prints one job's log lines in seq order and notices when the job ends."""

    job_id: int
    server_url: str
    printed_seq: int = 0
    ended: dict[str, Any] | None = None
    backlog: list[tuple[int, str]] = field(default_factory=list)

    def take(self, message: dict[str, Any], *, live: bool) -> None:
        kind = message.get("type")
        if kind == "error":
            text = str(message.get("error"))
            code = EXIT_NO_JOB if text.startswith("no job") else EXIT_ERROR
            raise CliError(f"{text} on {self.server_url}" if code == EXIT_NO_JOB else text, code)
        if message.get("job") != self.job_id:
            return
        if kind == "log":
            seq, line = int(message["seq"]), str(message["line"])
            if live:
                self.print_lines([(seq, line)])
            else:
                self.backlog.append((seq, line))
        elif kind == "gap" and live:
            print(
                f"transcriptor: {message.get('missed')} line(s) skipped: the server could "
                f"not send them in time (see `transcriptor logs {self.job_id} -n N`)",
                file=sys.stderr,
            )
        elif kind == "status" and message.get("status") in FINAL:
            self.ended = message

    def print_lines(self, lines: Iterable[tuple[int, str]]) -> None:
        out = []
        for seq, line in lines:
            if seq > self.printed_seq:
                out.append(line + "\n")
                self.printed_seq = seq
        if out:
            sys.stdout.write("".join(out))
            sys.stdout.flush()

    def flush_backlog(self, keep: int) -> None:
        """Print the last `keep` replayed lines; the rest count as seen."""
        lines = sorted(dict(self.backlog).items())
        if lines:
            self.printed_seq = max(self.printed_seq, lines[0][0] - 1)
            skipped = lines[: max(0, len(lines) - keep)]
            if skipped:
                self.printed_seq = skipped[-1][0]
        self.print_lines(lines)
        self.backlog.clear()


def frame_messages(data: str) -> list[dict[str, Any]]:
    """A frame holds one JSON object or an array of them."""
    try:
        parsed = json.loads(data)
    except ValueError:
        return []
    items = parsed if isinstance(parsed, list) else [parsed]
    return [item for item in items if isinstance(item, dict)]


async def follow(args: argparse.Namespace) -> int:
    async with (
        ServerClient.connect(args.server, args.token) as client,
        client.websocket() as ws,
    ):
        follower = Follower(args.job, client.url)
        await ws.send_json({"type": "subscribe", "job": args.job})
        await ws.send_json({"type": "ping"})
        live = False
        while True:
            frame = await ws.receive()
            if frame.type != aiohttp.WSMsgType.TEXT:
                raise CliError(
                    f"lost the connection to {client.url} before job {args.job} ended; "
                    f"see `transcriptor jobs` for its status",
                    EXIT_UNREACHABLE,
                )
            for message in frame_messages(frame.data):
                if not live and message.get("type") == "pong":
                    live = True
                    follower.flush_backlog(args.lines)
                    continue
                follower.take(message, live=live)
            # A finished job's status comes before its replayed lines: end only after the pong.
            if live and follower.ended is not None:
                print(describe_ending(follower.ended), file=sys.stderr)
                return EXIT_OK
