"""Channels without a server: numbering, replay, the fast log encoding, bounded queues."""

from __future__ import annotations

import json

import pytest

from pipeline.protocol import parse_line
from server.jobs.channels import Channel, Subscriber, encode, encode_log

TRICKY_LINES = ["plain", 'a "quote" and \\ back', "tab\t nul\x00 unit\x1f", "✓ é 漢字 😀", "\u2028\u2029", ""]


@pytest.mark.parametrize("line", TRICKY_LINES)
def test_log_encoding_is_the_generic_one(line: str) -> None:
    fast = encode_log(7, 42, line)
    assert fast == encode({"type": "log", "job": 7, "seq": 42, "line": line})
    assert json.loads(fast) == {"type": "log", "job": 7, "seq": 42, "line": line}


def test_lines_are_numbered_replayed_and_counted_when_dropped() -> None:
    channel = Channel(3)
    reader, stalled = Subscriber(), Subscriber(maxsize=2)
    channel.subscribers |= {reader, stalled}
    for i in range(5):
        line = f"line {i + 1}"
        channel.publish_line(line, parse_line(line))
    got = [json.loads(m) for m in reader.pending]
    assert [(m["seq"], m["line"]) for m in got] == [(i, f"line {i}") for i in range(1, 6)]
    assert len(stalled.pending) == 2 and stalled.missed == {3: 3}
    replay, missed = channel.replay_since(2)
    assert [json.loads(m)["seq"] for m in replay] == [3, 4, 5] and missed == 0
