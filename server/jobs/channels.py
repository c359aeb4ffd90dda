"""Per-job pub/sub: numbered log lines, a replay buffer, one bounded queue per subscriber.

Publishing never awaits: each message is encoded once and offered to every subscriber's
queue without waiting, so one slow client never holds the others back. A subscriber whose
queue is full loses messages; it is then told how many log lines it missed (a `gap`
message) as soon as it has room again. Status changes have a small reserve past the
bounds, so a subscriber that fell behind still hears its job end.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.protocol import Event, Progress, Segment
from server.jobs.state import JobStatus

SUBSCRIBER_QUEUE_SIZE = 4096
REPLAY_LINES = 5000
# Bounds in size too, not only in messages: a line may be 64 KiB, so 10,000 buffered ones
# could hold ~650 MB per job (issue #14). Sizes are len() of the encoded JSON, which is
# the byte count for ASCII (non-ASCII is kept unescaped, 1 char each).
SUBSCRIBER_QUEUE_BYTES = 8 * 1024 * 1024
REPLAY_BYTES = 8 * 1024 * 1024
# Room past a full queue kept for status changes (and the gap told before one): a client
# that fell behind may lose lines, but it must hear that its job ended. A job has a few.
STATUS_RESERVE = 64
STATUS_RESERVE_BYTES = 64 * 1024
_LOG_PREFIX = '{"type":"log",'


# One encoder for the process: json.dumps with options builds a new one per call, which
# was most of the cost of a log line on its way to the clients.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_encode_str = json.encoder.encode_basestring  # C-accelerated


@dataclass(frozen=True)
class StatusChange:
    """The event of a `status` message: what a subscriber in this process acts on without
    decoding the JSON (the OpenAI follower)."""

    status: str


# What a subscriber is offered beside the encoded message: the event it was made from.
Offered = Event | StatusChange | None


def status_message(view: dict[str, Any]) -> dict[str, Any]:
    """The `status` message for a job as the API shows it (the runner's view)."""
    keys = ("status", "progress", "exit_code", "error_message", "cancel_reason", "queue_position")
    return {"type": "status", "job": view["id"], **{key: view.get(key) for key in keys}}


def encode(message: dict[str, Any]) -> str:
    return _encode(message)


def encode_log(job_id: int, seq: int, line: str) -> str:
    """encode() of a `log` message, built directly: it is sent for every line of output."""
    return f'{{"type":"log","job":{job_id},"seq":{seq},"line":{_encode_str(line)}}}'


@dataclass(eq=False)
class Subscriber:
    """One websocket's view of the channels: its bounded queue of encoded messages.

    A deque and an event rather than an asyncio.Queue: a 10k lines/s job followed by 50
    sockets offers half a million messages a second, and Queue.put_nowait/get_nowait cost
    several times a deque append/popleft (benchmarks/RESULTS.md, log latency).
    """

    pending: deque[str] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    missed: dict[int, int] = field(default_factory=dict)  # job -> log lines dropped
    maxsize: int = SUBSCRIBER_QUEUE_SIZE
    maxbytes: int = SUBSCRIBER_QUEUE_BYTES
    size: int = 0  # of what is pending

    def room(self, reserve: bool = False) -> tuple[int, int]:
        """How many more messages, and how large in all, the queue takes now (`reserve`:
        counting the room kept for status changes)."""
        count, size = self.maxsize - len(self.pending), self.maxbytes - self.size
        return (count + STATUS_RESERVE, size + STATUS_RESERVE_BYTES) if reserve else (count, size)

    def _put(self, encoded: str, reserve: bool = False) -> bool:
        pending = self.pending
        if reserve:
            count, size = self.room(reserve=True)
            if count <= 0 or (pending and len(encoded) > size):
                return False
        elif len(pending) >= self.maxsize or (pending and self.size + len(encoded) > self.maxbytes):
            return False  # the hot path (every log line), written out: no call, no tuple
        pending.append(encoded)
        self.size += len(encoded)
        if len(pending) == 1:
            # The writer waits on the event only when the queue is empty.
            self.ready.set()
        return True

    def offer(
        self, job_id: int, encoded: str, next_seq: int, *, log_line: bool, event: Offered = None
    ) -> None:
        """Queue one message; `next_seq` is the seq of the next log line this one precedes
        (its own, for a log line); `event` is what the message encodes, if it has one."""
        # Called once per message per subscriber: the common case is one test and _put.
        status = isinstance(event, StatusChange)
        if self.missed:
            self._tell_missed(job_id, next_seq, reserve=status)
        if not self._put(encoded, reserve=status) and log_line:
            self.missed[job_id] = self.missed.get(job_id, 0) + 1

    def _tell_missed(self, job_id: int, next_seq: int, *, reserve: bool = False) -> None:
        pending = self.missed.get(job_id)
        count, size = self.room(reserve)
        if pending and count >= 2 and size >= 256:
            gap = {"type": "gap", "job": job_id, "missed": pending, "next_seq": next_seq}
            self._put(encode(gap), reserve=reserve)
            del self.missed[job_id]

    def send_direct(self, encoded: str, *, reserve: bool = False) -> None:
        """Queue a reply to this subscriber alone; dropped only if the queue is full
        (`reserve`: past the bounds too, for a job's end)."""
        self._put(encoded, reserve=reserve)

    async def take(self, limit: int) -> list[str]:
        """Wait until something is queued; then up to `limit` messages, oldest first."""
        while not self.pending:
            self.ready.clear()
            await self.ready.wait()
        batch = [self.pending.popleft() for _ in range(min(limit, len(self.pending)))]
        self.size -= sum(map(len, batch))
        return batch


@dataclass(eq=False)
class Channel:
    job_id: int
    seq: int = 0
    subscribers: set[Subscriber] = field(default_factory=set)
    # (seq, encoded) for log lines and the events parsed from them, oldest first; at most
    # REPLAY_LINES * 2 entries and REPLAY_BYTES in all (replay_size).
    replay: deque[tuple[int, str]] = field(default_factory=deque)
    replay_size: int = 0
    max_replay_entries: int = REPLAY_LINES * 2
    max_replay_bytes: int = REPLAY_BYTES

    def publish_line(self, line: str, event: Event | None) -> int:
        self.seq += 1
        seq = self.seq
        self._publish_encoded(seq, encode_log(self.job_id, seq, line), log_line=True)
        if isinstance(event, Progress):
            message = {
                "type": "progress",
                "job": self.job_id,
                "seq": seq,
                "progress": event.fraction,
                "done_seconds": event.done_seconds,
                "total_seconds": event.total_seconds,
            }
            self._publish_seq(seq, message, event)
        elif isinstance(event, Segment):
            message = {
                "type": "segment",
                "job": self.job_id,
                "seq": seq,
                "start": event.start,
                "end": event.end,
                "text": event.text,
            }
            self._publish_seq(seq, message, event)
        return seq

    def _publish_seq(self, seq: int, message: dict[str, Any], event: Event) -> None:
        self._publish_encoded(seq, encode(message), log_line=False, event=event)

    def _publish_encoded(self, seq: int, encoded: str, *, log_line: bool, event: Offered = None) -> None:
        replay = self.replay
        replay.append((seq, encoded))
        self.replay_size += len(encoded)
        while len(replay) > self.max_replay_entries or (
            self.replay_size > self.max_replay_bytes and len(replay) > 1
        ):
            self.replay_size -= len(replay.popleft()[1])
        # Only log lines count as missed; a gap told before any other message points at
        # the next log line still to come.
        next_seq = seq if log_line else self.seq + 1
        for subscriber in self.subscribers:
            subscriber.offer(self.job_id, encoded, next_seq, log_line=log_line, event=event)

    def publish(self, message: dict[str, Any], event: Offered = None) -> None:
        """A message with no log sequence (status, metrics): live only, never replayed."""
        encoded = encode(message)
        for subscriber in self.subscribers:
            subscriber.offer(self.job_id, encoded, self.seq + 1, log_line=False, event=event)

    def publish_status(self, message: dict[str, Any]) -> None:
        """A `status_message`, with its status as the typed event."""
        self.publish(message, StatusChange(str(message["status"])))

    def replay_since(
        self, since: int, room: tuple[int, int] | None = None
    ) -> tuple[list[str], int]:
        """Buffered messages after `since`, and how many log lines are no longer held.

        With `room` (messages, size) the newest that fit are returned and the older lines
        count as missed, so a replay never overfills a subscriber's queue in silence.
        """
        entries = [(seq, encoded) for seq, encoded in self.replay if seq > since]
        if room is not None:
            count, size = room
            start = len(entries)
            while start > 0 and len(entries) - start < count and size >= len(entries[start - 1][1]):
                start -= 1
                size -= len(entries[start][1])
            # Start at a log line: an event without its line would hide that line's loss.
            while start < len(entries) and not entries[start][1].startswith(_LOG_PREFIX):
                start += 1
            entries = entries[start:]
        oldest = entries[0][0] if entries else self.seq + 1
        missed = max(0, oldest - since - 1) if since < self.seq else 0
        return [encoded for _seq, encoded in entries], missed


class Channels:
    """All job channels plus the job-list feed.

    `on_last_left(job_id)` is called when a job's last subscriber leaves: the auto-kill
    trigger. `on_joined(job_id)` is called on every subscribe, so a pending cancel can be
    called off (a page reload).
    """

    def __init__(
        self,
        *,
        on_last_left: Callable[[int], None] | None = None,
        on_joined: Callable[[int], None] | None = None,
    ) -> None:
        self._channels: dict[int, Channel] = {}
        self._feed: set[Subscriber] = set()
        self.on_last_left = on_last_left
        self.on_joined = on_joined

    def get(self, job_id: int) -> Channel:
        channel = self._channels.get(job_id)
        if channel is None:
            channel = self._channels[job_id] = Channel(job_id)
        return channel

    def find(self, job_id: int) -> Channel | None:
        return self._channels.get(job_id)

    def drop(self, job_id: int) -> None:
        """Forget a finished job's channel once nobody listens (its log file remains)."""
        channel = self._channels.get(job_id)
        if channel is not None and not channel.subscribers:
            del self._channels[job_id]

    def subscriber_count(self, job_id: int) -> int:
        channel = self._channels.get(job_id)
        return len(channel.subscribers) if channel else 0

    def subscribe(self, job_id: int, subscriber: Subscriber) -> Channel:
        channel = self.get(job_id)
        channel.subscribers.add(subscriber)
        if self.on_joined is not None:
            self.on_joined(job_id)
        return channel

    def unsubscribe(self, job_id: int, subscriber: Subscriber) -> None:
        channel = self._channels.get(job_id)
        if channel is None or subscriber not in channel.subscribers:
            return
        channel.subscribers.discard(subscriber)
        subscriber.missed.pop(job_id, None)
        if not channel.subscribers and self.on_last_left is not None:
            self.on_last_left(job_id)

    def unsubscribe_all(self, subscriber: Subscriber) -> None:
        self._feed.discard(subscriber)
        for job_id in [j for j, c in self._channels.items() if subscriber in c.subscribers]:
            self.unsubscribe(job_id, subscriber)

    def follow_jobs(self, subscriber: Subscriber) -> None:
        self._feed.add(subscriber)

    def publish_job(self, job: dict[str, Any]) -> None:
        """A job's row changed: tell everyone following the job list."""
        encoded = encode({"type": "job", "job": job["id"], "data": job})
        ended = JobStatus(job["status"]).is_final  # a job list must not show it running for ever
        for subscriber in self._feed:
            subscriber.send_direct(encoded, reserve=ended)
