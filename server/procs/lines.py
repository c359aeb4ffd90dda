"""Split a child's output stream into decoded lines, bounded in memory.

Hand-written rather than StreamReader.readline: it splits at a lone \\r (progress bars),
cuts over-long lines instead of failing, and was measured to matter (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


def _utf8_cut(buf: bytearray, start: int, end: int) -> int:
    """end, moved back (at most 3 bytes) so a UTF-8 character is not split."""
    cut = end
    while cut > start and end - cut < 3 and (buf[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > start else end


async def read_lines(
    stream: asyncio.StreamReader, *, max_line_bytes: int = 65536
) -> AsyncIterator[str]:
    """Decoded lines from stream, split at \\n, \\r\\n and a lone \\r (progress bars).

    A line longer than max_line_bytes is cut into pieces of at most max_line_bytes (backed
    off to a UTF-8 character boundary), each yielded as a line: nothing is dropped, and
    memory stays bounded however long the line. A final line without an end is yielded at
    EOF. Bytes that are not UTF-8 become U+FFFD.
    """
    if max_line_bytes < 4:
        raise ValueError("max_line_bytes must be at least 4")
    buf = bytearray()
    skip_lf = False  # the last line ended in \r: a \n right after it belongs to it
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        buf += chunk
        pos = 0
        n = len(buf)
        # Where the next \r and \n are (n: none in the buffer). Each is searched for again
        # only once passed: searching a window per line scanned 64 KiB for a \r that
        # was not there, for every 100-byte line.
        next_cr = next_lf = -1
        while pos < n:
            if skip_lf:
                skip_lf = False
                if buf[pos] == 0x0A:
                    pos += 1
                    continue
            if next_cr < pos:
                next_cr = buf.find(b"\r", pos)
                if next_cr < 0:
                    next_cr = n
            if next_lf < pos:
                next_lf = buf.find(b"\n", pos)
                if next_lf < 0:
                    next_lf = n
            i = next_cr if next_cr < next_lf else next_lf
            if i < n and i - pos <= max_line_bytes:
                yield buf[pos:i].decode("utf-8", errors="replace")
                skip_lf = buf[i] == 0x0D
                pos = i + 1
            elif n - pos > max_line_bytes:
                cut = _utf8_cut(buf, pos, pos + max_line_bytes)
                yield buf[pos:cut].decode("utf-8", errors="replace")
                pos = cut
            else:
                break  # an incomplete line: wait for more
        del buf[:pos]
    if buf:
        yield buf.decode("utf-8", errors="replace")
