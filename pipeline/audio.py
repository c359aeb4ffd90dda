"""Probe and decode audio with PyAV, whole or as a stream of blocks.

This module imports only `av` at import time (numpy only when decoding, never
faster-whisper), so the server can call `probe()` on every upload without paying for the
model libraries.

Opening is restricted: only demuxers for self-contained media files are allowed, so a
playlist (HLS, ffconcat, ...) disguised as `.mp3` is refused before it can make FFmpeg
read other files or URLs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import av

if TYPE_CHECKING:
    import numpy as np

SAMPLE_RATE = 16_000

# Demuxers of self-contained media files. FFmpeg checks `format_whitelist` right after
# probing, before the demuxer reads its header, so playlists (hls, concat, ...) never get
# to open the files they reference. The names are FFmpeg's; some are comma lists.
_ALLOWED_FORMATS = frozenset(
    """
    aac ac3 aiff amr amrnb amrwb ape asf au avi caf dts dtshd eac3 flac flv live_flv
    matroska webm mov mp4 m4a 3gp 3g2 mj2 mp3 mpeg mpegts mpegvideo ogg opus oma rm
    s337m sox tta voc w64 wav wv xwma mlp truehd qcp dsf iff gsm ircam nistsphere
    """.split()
)
# Samples resampled at once while decoding.
_GROUP_SAMPLES = 500_000
# Packets must cover at least this share of the duration the header declares.
_TRUNCATED_RATIO = 0.9


class ProbeError(ValueError):
    """The file is not usable audio; str(error) is one clear line for a person."""


def _open(path: str) -> Any:
    """Open `path` with PyAV, refusing anything that is not a plain local media file."""
    if not os.path.exists(path):
        raise ProbeError(f"file not found: {path}")
    if not os.path.isfile(path):
        raise ProbeError(f"not a regular file: {path}")
    if os.path.getsize(path) == 0:
        raise ProbeError(f"file is empty: {path}")
    options = {
        "format_whitelist": ",".join(sorted(_ALLOWED_FORMATS)),
        "protocol_whitelist": "file",
    }
    try:
        container = av.open(path, mode="r", options=options, metadata_errors="ignore")
    except av.error.FFmpegError:
        # Unknown data, a refused demuxer (playlists) and unreadable headers all land here.
        raise ProbeError(f"not an audio file: {path}") from None
    # A second guard, in case an FFmpeg build ignores the whitelist option.
    names = set(container.format.name.split(","))
    if not names & _ALLOWED_FORMATS:
        container.close()
        raise ProbeError(f"not an audio file: {path} (format {container.format.name} refused)")
    return container


def _wav_missing_bytes(path: str) -> int:
    """How many bytes of the WAV `data` chunk the header promises but the file lacks.

    FFmpeg sizes a WAV stream by the file, not the header, so a cut-off upload looks whole
    to it; the RIFF header still says how long it should be.
    """
    with open(path, "rb") as file:
        head = file.read(4096)
    at = head.find(b"data")
    if not head.startswith(b"RIFF") or at < 0 or at + 8 > len(head):
        return 0
    size = int.from_bytes(head[at + 4 : at + 8], "little")
    if size in (0, 0xFFFFFFFF):  # streamed WAVs leave the size unset
        return 0
    return max(0, at + 8 + size - os.path.getsize(path))


def _declared_duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def probe(path: str | os.PathLike[str]) -> float:
    """The audio duration of `path` in seconds.

    Reads packets (without decoding) to check the file really holds the audio its header
    promises. Raises ProbeError with a one-line message for a missing, empty, non-audio,
    truncated or sample-less file, and for playlists and other files that refer to
    other files.
    """
    path = os.fspath(path)
    container = _open(path)
    try:
        if not container.streams.audio:
            raise ProbeError(f"file has no audio stream: {path}")
        stream = container.streams.audio[0]
        declared = _declared_duration(container, stream)
        first: float | None = None
        last = 0.0
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None or packet.time_base is None:
                    continue
                begin = float(packet.pts * packet.time_base)
                length = float((packet.duration or 0) * packet.time_base)
                first = begin if first is None else min(first, begin)
                last = max(last, begin + length)
        except av.error.FFmpegError:
            raise ProbeError(f"audio is truncated or corrupt: {path}") from None
        if first is None:
            raise ProbeError(f"file has no audio samples: {path}")
        if "wav" in container.format.name.split(",") and _wav_missing_bytes(path) > 0:
            raise ProbeError(f"audio is truncated: {path}")
        found = last - min(first, 0.0) if first < 0 else last
        if declared and declared > 0 and found < declared * _TRUNCATED_RATIO:
            raise ProbeError(
                f"audio is truncated: {path} ({found:.1f} s of {declared:.1f} s present)"
            )
        if found <= 0:
            raise ProbeError(f"file has no audio samples: {path}")
        return found
    finally:
        container.close()


def _frames(container: Any) -> Iterator[Any]:
    # Skip frames FFmpeg cannot decode rather than failing the whole file, as
    # faster-whisper's own decoder does.
    iterator = container.decode(audio=0)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue


def decode(path: str | os.PathLike[str]) -> np.ndarray:
    """The first audio stream of `path` as 16 kHz mono float32 samples in [-1, 1]."""
    import numpy as np

    parts = list(stream(path))
    if not parts:
        raise ProbeError(f"file has no audio samples: {os.fspath(path)}")
    return np.concatenate(parts)


def stream(
    path: str | os.PathLike[str],
    first_seconds: float = 30.0,
    block_seconds: float = 30.0,
    skip_seconds: float = 0.0,
) -> Iterator[np.ndarray]:
    """`decode`'s samples as blocks: `first_seconds` long, then `block_seconds` (the last
    one shorter), leaving out the first `skip_seconds`. Only a block or two is in memory."""
    import numpy as np

    path = os.fspath(path)
    container = _open(path)
    try:
        if not container.streams.audio:
            raise ProbeError(f"file has no audio stream: {path}")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        # Resampling many small frames one by one is slow; FIFO them into large groups.
        fifo = av.AudioFifo()
        pending: list[np.ndarray] = []
        held = 0
        skip = round(skip_seconds * SAMPLE_RATE)
        want = round(first_seconds * SAMPLE_RATE)
        found = False

        def resample(frame: Any) -> None:
            nonlocal held
            for out in resampler.resample(frame):
                pending.append(out.to_ndarray().reshape(-1))
                held += pending[-1].size

        def take(count: int) -> np.ndarray:
            nonlocal held, skip
            joined = np.concatenate(pending) if len(pending) != 1 else pending[0]
            pending.clear()
            if skip:
                dropped = min(skip, joined.size)
                joined, skip = joined[dropped:], skip - dropped
            block, rest = joined[:count], joined[count:]
            if rest.size:
                pending.append(rest)
            held = rest.size
            return block.astype(np.float32) / 32768.0

        for frame in _frames(container):
            frame.pts = None  # let the resampler re-time; some containers have gaps
            fifo.write(frame)
            if fifo.samples >= _GROUP_SAMPLES:
                resample(fifo.read())
            while held - skip >= want:
                found = True
                yield take(want)
                want = round(block_seconds * SAMPLE_RATE)
        if fifo.samples:
            resample(fifo.read())
        resample(None)
        while held > skip:
            found = True
            yield take(want)
            want = round(block_seconds * SAMPLE_RATE)
        if not found and not skip_seconds:
            raise ProbeError(f"file has no audio samples: {path}")
    finally:
        container.close()


