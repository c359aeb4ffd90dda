"""One live session's utterances: cut by the gate (or by commits), decoded off the reader's
thread, with deltas from LocalAgreement and a final text per utterance.

The reader thread calls `feed`, `commit`, `clear` and `close`; the decoder thread runs
`decode_loop`. They share the state under one condition. Events go out through `emit`
as plain dicts (`event` names the kind; the server turns them into OpenAI's events).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.live_audio import FRAME, RATE, EnergyGate, TurnDetection
from pipeline.live_decode import LocalAgreement

Emit = Callable[[dict[str, Any]], None]
# decode(samples, final) -> text
Decode = Callable[[np.ndarray, bool], str]

START_FRAMES = 3  # voiced frames in a row that open an utterance (60 ms)
# Whisper's window is 30 s, but short windows are what keep decoding cheap: a longer
# utterance is cut here and goes on as the next one.
MAX_UTTERANCE_SECONDS = 12.0
# A partial decode waits for this much new audio, so a session costs at most about one
# decode per step while someone speaks.
STEP_SECONDS = 0.3
# After this much quiet in an utterance, its final text is decoded ahead (beam and all):
# if the gate then closes it with no voice since, that text is its final one, ready about
# silence_duration_ms - QUIET_SECONDS earlier than a decode begun at the close. Partials
# stop for that quiet too: they would find no new words, and hold the decoder up.
QUIET_SECONDS = 0.2


def _ms(samples: int) -> int:
    return int(samples * 1000 / RATE)


@dataclass(eq=False)
class Utterance:
    item: int
    start: int  # sample index in the session, 16 kHz
    chunks: list[np.ndarray] = field(default_factory=list)
    length: int = 0
    decoded_length: int = 0  # how much audio the last partial decode read
    voiced_length: int = 0  # where its last voiced frame ends
    ahead: tuple[int, str] | None = None  # (audio read, text) of a final decoded ahead
    agreement: LocalAgreement = field(default_factory=LocalAgreement)

    def add(self, samples: np.ndarray) -> None:
        self.chunks.append(samples)
        self.length += len(samples)

    def samples(self) -> np.ndarray:
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0] if self.chunks else np.zeros(0, dtype=np.float32)


class LiveSession:
    def __init__(self, emit: Emit, turns: TurnDetection | None) -> None:
        self.emit = emit
        self.position = 0  # samples received, 16 kHz
        self._cond = threading.Condition()
        self._current: Utterance | None = None
        self._finals: deque[Utterance] = deque()
        self._closed = False
        self._items = 0
        self._pending = np.zeros(0, dtype=np.float32)  # less than a frame, not yet gated
        self._recent: deque[np.ndarray] = deque()  # unvoiced frames kept for the prefix
        self._voiced_run = 0
        self._silent_run = 0
        self.configure(turns)

    def configure(self, turns: TurnDetection | None) -> None:
        with self._cond:
            self.turns = turns
            self.gate = EnergyGate(turns.threshold if turns else 0.5)

    # -- the reader's side -------------------------------------------------------------

    def feed(self, samples: np.ndarray) -> None:
        with self._cond:
            data = np.concatenate((self._pending, samples)) if len(self._pending) else samples
            whole = len(data) // FRAME * FRAME
            self._pending = data[whole:]
            for begin in range(0, whole, FRAME):
                self._frame(data[begin : begin + FRAME])
            self._cond.notify_all()

    def _frame(self, frame: np.ndarray) -> None:
        self.position += len(frame)
        if self.turns is None:  # manual turns: everything is speech until a commit
            if self._current is None:
                self._current = self._open(self.position - len(frame), [])
            self._current.add(frame)
            return
        voiced = self.gate.voiced(frame)
        current = self._current
        if current is None:
            self._recent.append(frame)
            prefix = max(START_FRAMES, self.turns.prefix_padding_ms * RATE // 1000 // FRAME + START_FRAMES)
            while len(self._recent) > prefix:
                self._recent.popleft()
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            if self._voiced_run >= START_FRAMES:
                start = self.position - FRAME * len(self._recent)
                self._current = self._open(start, list(self._recent))
                self._recent.clear()
                item = self._current.item
                self.emit({"event": "speech_started", "item": item, "audio_start_ms": _ms(start)})
            return
        current.add(frame)
        if voiced:
            current.voiced_length = current.length
        self._silent_run = 0 if voiced else self._silent_run + 1
        if self._silent_run * FRAME * 1000 >= self.turns.silence_duration_ms * RATE:
            self._stop(self.position)
        elif current.length >= MAX_UTTERANCE_SECONDS * RATE:
            self._stop(self.position)
            self._voiced_run = START_FRAMES - 1  # speech goes on: the next frame reopens

    def _open(self, start: int, frames: list[np.ndarray]) -> Utterance:
        self._items += 1
        utterance = Utterance(self._items, start)
        for frame in frames:
            utterance.add(frame)
        utterance.voiced_length = utterance.length
        self._silent_run = 0
        return utterance

    def _stop(self, end: int) -> None:
        current = self._current
        assert current is not None
        self._current = None
        self._voiced_run = 0
        if self.turns is not None:
            self.emit({"event": "speech_stopped", "item": current.item, "audio_end_ms": _ms(end)})
        self.emit({"event": "committed", "item": current.item})
        self._finals.append(current)

    def commit(self) -> None:
        """The client ends the utterance now."""
        with self._cond:
            if self._current is None or self._current.length == 0:
                self.emit(
                    {
                        "event": "error",
                        "code": "input_audio_buffer_commit_empty",
                        "message": "nothing to commit: no speech since the last commit",
                    }
                )
                return
            self._stop(self.position)
            self._cond.notify_all()

    def clear(self) -> None:
        """Drop the utterance in progress, untranscribed."""
        with self._cond:
            self._current = None
            self._recent.clear()
            self._voiced_run = self._silent_run = 0
            self.emit({"event": "cleared"})

    def close(self) -> None:
        """No more audio: finish the utterance in progress, then the decoder ends."""
        with self._cond:
            if self._current is not None and self._current.length:
                self._stop(self.position)
            self._current = None
            self._closed = True
            self._cond.notify_all()

    # -- the decoder's side ------------------------------------------------------------

    def _next(self) -> tuple[Utterance, np.ndarray, str] | None:
        """The next decode to run, waiting for one: a final, a final ahead, or a partial;
        None once closed and done."""
        with self._cond:
            while True:
                if self._finals:
                    utterance = self._finals.popleft()
                    return utterance, utterance.samples(), "final"
                current = self._current
                if current is not None:
                    quiet = current.length - current.voiced_length >= QUIET_SECONDS * RATE
                    stale = current.ahead is None or current.ahead[0] < current.voiced_length
                    if quiet and stale and self.turns is not None:
                        return current, current.samples().copy(), "ahead"
                    if not quiet and current.length - current.decoded_length >= STEP_SECONDS * RATE:
                        return current, current.samples().copy(), "partial"
                if self._closed:
                    return None
                self._cond.wait()

    def decode_loop(self, decode: Decode) -> None:
        while (work := self._next()) is not None:
            utterance, samples, kind = work
            if kind == "ahead":
                utterance.ahead = len(samples), decode(samples, True)
                continue
            if kind == "partial":
                text = decode(samples, False)
                utterance.decoded_length = len(samples)
                delta = utterance.agreement.update(text)
                if delta:
                    self.emit({"event": "delta", "item": utterance.item, "delta": delta})
                continue
            ahead = utterance.ahead
            if ahead is not None and ahead[0] >= utterance.voiced_length:
                text = ahead[1]  # decoded ahead, and nothing was said since
            else:
                text = decode(samples, True)
            self.emit(
                {
                    "event": "completed",
                    "item": utterance.item,
                    "transcript": text,
                    "start": utterance.start / RATE,
                    "end": (utterance.start + len(samples)) / RATE,
                    "seconds": round(len(samples) / RATE, 3),
                }
            )
