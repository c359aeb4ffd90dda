"""The last N lines of a file, read backwards from the end in blocks.

The cost follows the size of the lines returned, not the size of the file. Synchronous:
callers on the event loop use `asyncio.to_thread(tail_lines, path, n)`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_FIRST_BLOCK = 64 * 1024
# A tail never reads more than this; a last line longer than that comes back cut at its start.
MAX_TAIL_BYTES = 16 * 1024 * 1024
# The same line ends read_lines() splits on: \r\n, \n, and a lone \r (progress bars).
_LINE_END = re.compile(rb"\r\n|\n|\r")


def tail_lines(path: Path | str, n: int, *, max_bytes: int = MAX_TAIL_BYTES) -> list[str]:
    """The last n lines of the file at path, oldest first; [] if it does not exist.

    Lines end at \\n, \\r\\n or a lone \\r; a final line without an end counts. Bytes that
    are not UTF-8 come back as U+FFFD.
    """
    if n <= 0:
        return []
    try:
        f = open(path, "rb")  # outside `with`, so only open() errors mean []
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        start = end
        data = b""
        block = _FIRST_BLOCK
        while True:
            read_from = max(0, start - block, end - max_bytes)
            if read_from == start:
                break
            f.seek(read_from)
            data = f.read(start - read_from) + data
            start = read_from
            if start == 0:
                break
            # Enough once more than n line ends are in hand (the first piece may be partial).
            # A \r at the very start might pair with a \n we have; it is never counted alone.
            if len(_LINE_END.findall(data, 1)) > n:
                break
            block *= 2  # doubling keeps the total work linear in the bytes read
        pieces = _LINE_END.split(data)
        if pieces and pieces[-1] == b"":
            pieces.pop()  # the file ends with a line end: no empty line after it
        if start > 0 and len(pieces) > n:
            pieces = pieces[1:]  # the first piece began before what we read
        return [p.decode("utf-8", errors="replace") for p in pieces[-n:]]
