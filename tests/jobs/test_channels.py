"""Channels without a server: numbering, replay, the fast log encoding, bounded queues."""

from __future__ import annotations

import json

import pytest

from pipeline.protocol import parse_line
from server.jobs.channels import Channel, Channels, Subscriber, encode, encode_log

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


BIG_LINE = "x" * 65_000  # about the largest line the reader passes on (64 KiB pieces)
MiB = 1024 * 1024


def test_replay_buffer_is_bounded_in_bytes() -> None:
    channel = Channel(5)
    for _ in range(1000):  # 65 MB of lines: 10,000 entries would hold all of them
        channel.publish_line(BIG_LINE, None)
    held = sum(len(encoded) for _seq, encoded in channel.replay)
    assert held <= 8 * MiB, f"the replay buffer holds {held / MiB:.0f} MB"
    replay, missed = channel.replay_since(0)
    seqs = [json.loads(m)["seq"] for m in replay]
    # What it still holds is the newest lines, and the rest is reported as missed.
    assert seqs == list(range(missed + 1, 1001)) and missed > 0


def test_subscriber_queue_is_bounded_in_bytes_and_reports_the_loss() -> None:
    channel = Channel(6)
    stalled = Subscriber()
    channel.subscribers.add(stalled)
    for _ in range(1000):
        channel.publish_line(BIG_LINE, None)
    queued = sum(map(len, stalled.pending))
    assert queued <= 8 * MiB, f"a stalled subscriber's queue holds {queued / MiB:.0f} MB"
    kept = len(stalled.pending)
    assert stalled.missed == {6: 1000 - kept}
    stalled.pending.clear()
    stalled.size = 0
    channel.publish_line("after", None)
    gap, line = (json.loads(m) for m in stalled.pending)
    assert gap == {"type": "gap", "job": 6, "missed": 1000 - kept, "next_seq": 1001}
    assert line["seq"] == 1001


def test_replay_takes_only_what_fits_the_queue_and_counts_the_rest() -> None:
    channel = Channel(7)
    for i in range(1, 101):
        line = f"[progress] {i}/100 s" if i % 2 else BIG_LINE
        channel.publish_line(line, parse_line(line))
    replay, missed = channel.replay_since(10, room=(1000, 10 * 65_100))
    messages = [json.loads(m) for m in replay]
    assert messages[0]["type"] == "log", "a replay starts at a line, not at its event"
    seqs = sorted({m["seq"] for m in messages})
    assert seqs == list(range(10 + missed + 1, 101))
    assert sum(map(len, replay)) <= 10 * 65_100


def test_a_full_queue_still_hears_the_job_end_after_the_gap() -> None:
    # A reader that fell behind a flood must not wait for ever on a job that ended: the
    # final status (and the gap for the lines it lost) goes past the full queue.
    channel = Channel(8)
    behind = Subscriber(maxsize=10)
    channel.subscribers.add(behind)
    for i in range(25):
        channel.publish_line(f"flood {i}", None)
    assert len(behind.pending) == 10 and behind.missed == {8: 15}
    channel.publish_status({"type": "status", "job": 8, "status": "completed"})
    *lines, gap, status = (json.loads(m) for m in behind.pending)
    assert [m["seq"] for m in lines] == list(range(1, 11))
    assert gap == {"type": "gap", "job": 8, "missed": 15, "next_seq": 26}
    assert status["status"] == "completed" and behind.missed == {}
    # Plain messages still respect the bound.
    channel.publish({"type": "metrics", "job": 8})
    assert len(behind.pending) == 12


def test_the_job_list_feed_still_hears_a_job_end_when_full() -> None:
    channels = Channels()
    page = Subscriber(maxsize=3)
    channels.follow_jobs(page)
    for progress in range(5):
        channels.publish_job({"id": 4, "status": "running", "progress": progress / 10})
    assert len(page.pending) == 3  # progress updates past the bound are dropped
    channels.publish_job({"id": 4, "status": "completed", "progress": 1.0})
    assert json.loads(page.pending[-1])["data"]["status"] == "completed"
