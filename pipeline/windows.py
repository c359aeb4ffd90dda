"""Cut the audio into windows as it is decoded, in pauses, where Whisper's pieces end.

A window is a stretch of the file that a worker transcribes on its own. Windows are cut in
pauses (where one of faster-whisper's 30-second pieces of VAD speech ends, or without VAD
at the quietest tenth of a second near the target), so no word is cut in two and
neighbouring windows need no overlap or merging. The speech segments found here travel with the window, so
the worker does not run VAD a second time.

The first window is one Whisper window (30 s of speech), so the first text comes at once;
later ones hold as many as keeps one window finishing every second or two (`Sizer`):
on a CPU, batching more windows saves no CPU time (PIPELINE_NOTES.md), on a GPU it does.
Only the windows in flight and a block of audio are in memory, whatever the length.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.audio import SAMPLE_RATE, stream

if TYPE_CHECKING:
    import numpy as np

    from pipeline.settings import Settings
    from pipeline.vad import StreamVad

# Whisper's window: VAD segments are grouped into pieces of at most this much speech.
PIECE_SECONDS = 30.0
# Audio read per block: short first (the first window), then longer.
FIRST_BLOCK_SECONDS = 40.0
BLOCK_SECONDS = 60.0
# No cut this close to the end of what is decoded: VAD may still change its mind there.
_EDGE_SECONDS = 2.0
# A window never holds more audio than this (long silences), to keep memory flat.
MAX_WINDOW_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Window:
    """`samples` start `start` seconds into the file; `speech` is VAD's segments in it
    (sample offsets into `samples`), or None when VAD is off."""

    index: int
    start: float
    samples: np.ndarray
    speech: list[dict[str, int]] | None

    @property
    def end(self) -> float:
        return self.start + len(self.samples) / SAMPLE_RATE

    @property
    def speech_seconds(self) -> float:
        if self.speech is None:
            return len(self.samples) / SAMPLE_RATE
        return sum(s["end"] - s["start"] for s in self.speech) / SAMPLE_RATE


def preload() -> None:
    """Import faster-whisper and make its VAD model now (a standby does, before its job)."""
    from faster_whisper.vad import get_vad_model

    get_vad_model()


def vad_options() -> Any:
    """faster-whisper's VAD options, as BatchedInferencePipeline.transcribe sets them.

    Sequential decoding (--batch-size 0) gets them too: its own defaults (2 s of silence
    to end a segment, no length limit) would make a talk one segment, and so one window
    as long as the file; it still decodes each window's speech as one stream."""
    from faster_whisper.vad import VadOptions

    return VadOptions(max_speech_duration_s=PIECE_SECONDS, min_silence_duration_ms=160)


@dataclass
class Sizer:
    """How much speech the next window should hold: one 30-second piece until the leader
    knows how fast windows are decoded, then what it sets as `limit`; never over
    `ceiling` (--chunk-seconds)."""

    ceiling: float
    limit: float = PIECE_SECONDS
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_target(self) -> float:
        with self.lock:
            return max(1.0, min(self.limit, self.ceiling))

    def set_limit(self, limit: float) -> None:
        with self.lock:
            self.limit = limit


def _speech_cut(speech: list[dict[str, int]], length: int, target: float, final: bool) -> int | None:
    """Where to end a window of `length` samples whose VAD segments are `speech`, once it
    holds about `target` seconds of speech; None: read more audio first.

    faster-whisper groups speech into pieces of up to 30 s, greedily, as `collect_chunks`
    does, and decodes each piece as one Whisper window. A window here ends only where a
    piece ends, so its pieces are the very ones a whole-file run makes (greedy grouping
    restarted at a piece's end goes on as before), and so are the words. A cut elsewhere
    would add a piece edge, where Whisper drops or garbles a sentence.
    """
    safe = length if final else length - int(_EDGE_SECONDS * SAMPLE_RATE)
    wanted = max(1, round(target / PIECE_SECONDS))
    piece, pieces = 0, 0
    last_cut = None
    for number, segment in enumerate(speech):
        if segment["end"] > safe:
            break  # VAD may still extend this one
        size = segment["end"] - segment["start"]
        if number and piece + size > PIECE_SECONDS * SAMPLE_RATE:
            # `segment` begins a new piece: the pause before it ends one.
            pieces += 1
            last_cut = (speech[number - 1]["end"] + segment["start"]) // 2
            if pieces >= wanted:
                return last_cut
            piece = 0
        piece += size
    if final:
        return length
    if not speech:
        return safe if safe > 0 else None  # silence so far: a window of its own
    if length >= MAX_WINDOW_SECONDS * SAMPLE_RATE:
        return last_cut or safe  # long silences between short speech
    return None


def _quiet_cut(samples: np.ndarray, target: float, final: bool) -> int | None:
    """Without VAD: the quietest 0.1 s in the 5 s before `target` seconds."""
    import numpy as np

    want = int(target * SAMPLE_RATE)
    if len(samples) < want + int(_EDGE_SECONDS * SAMPLE_RATE):
        return len(samples) if final else None
    frame = SAMPLE_RATE // 10
    low = max(0, want - 50 * frame)
    frames = samples[low:want][: (want - low) // frame * frame].reshape(-1, frame)
    quietest = int(np.argmin(np.square(frames).mean(axis=1)))
    return low + quietest * frame + frame // 2


class Reader:
    """A thread that decodes `settings.input` and puts Windows from `skip` seconds on
    into `out`, then None at the end (or the exception that stopped it)."""

    def __init__(self, settings: Settings, sizer: Sizer, skip: float, ahead: int) -> None:
        self.settings, self.sizer, self.skip = settings, sizer, skip
        self.out: queue.Queue[Window | BaseException | None] = queue.Queue(maxsize=max(1, ahead))
        self.decoded_seconds = 0.0
        self.thread = threading.Thread(target=self._run, name="reader", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            for window in self.windows():
                self.out.put(window)
            self.out.put(None)
        except BaseException as error:  # handed to the leader, which raises it
            self.out.put(error)

    def windows(self) -> Iterator[Window]:
        import numpy as np

        from pipeline.vad import FRAME, StreamVad

        options = vad_options() if self.settings.vad else None
        vad = StreamVad(options) if options is not None else None
        blocks = self._blocks(vad)
        # `buffer` starts on a VAD frame boundary, `lead` samples before the next window.
        at = round(self.skip * SAMPLE_RATE)  # the next window's start
        buffer, lead = np.zeros(0, np.float32), at % FRAME
        index, final = 0, False
        while not final or len(buffer) > lead:
            block = next(blocks, None)
            if block is None:
                final = True
            else:
                buffer = np.concatenate([buffer, block])
            # One VAD pass over what is new, then as many windows as it allows.
            speech = None if vad is None else _shifted(vad.speech(buffer), lead)
            while len(buffer) > lead:
                target, view = self.sizer.next_target(), buffer[lead:]
                if speech is None:
                    cut = _quiet_cut(view, target, final)
                else:
                    cut = _speech_cut(speech, len(view), target, final)
                if cut is None:
                    break  # read more
                inside = None if speech is None else [s for s in speech if s["end"] <= cut]
                yield Window(index, at / SAMPLE_RATE, view[:cut].copy(), inside)
                index, at = index + 1, at + cut
                frames = (lead + cut) // FRAME
                buffer, lead = buffer[frames * FRAME :], (lead + cut) % FRAME
                if vad is not None:
                    vad.drop(frames)
                if speech is not None:
                    speech = _shifted(speech, cut)


    def _blocks(self, vad: StreamVad | None) -> Iterator[np.ndarray]:
        """The audio from the frame where `skip` falls. What comes before (a resumed run)
        is decoded too and fed to the VAD, whose state then is a whole-file pass's, so the
        windows after it are the ones the first run would have cut."""
        import numpy as np

        from pipeline.vad import FRAME

        skip = round(self.skip * SAMPLE_RATE)
        before = skip - skip % FRAME
        held = np.zeros(0, np.float32)
        for block in stream(self.settings.input, FIRST_BLOCK_SECONDS, BLOCK_SECONDS):
            self.decoded_seconds += len(block) / SAMPLE_RATE
            if before <= 0:
                yield block
                continue
            take = min(before, len(block))
            held = np.concatenate([held, block[:take]])
            whole = len(held) - len(held) % FRAME
            if vad is not None and whole:
                vad.advance(held[:whole])
            held, before = held[whole:], before - take
            if take < len(block):
                yield block[take:]


def _shifted(speech: list[dict[str, int]], by: int) -> list[dict[str, int]]:
    """Segments `by` samples earlier; none before 0 (a window starts in a pause: one
    reaching back past it is the next one's padding, which a whole-file pass cuts there)."""
    return [
        {"start": max(0, s["start"] - by), "end": s["end"] - by} for s in speech if s["end"] - by > 0
    ]


