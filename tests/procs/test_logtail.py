"""tail_lines: the last lines of a file, read backwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.jobs.logtail import tail_lines


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "log.txt"
    path.write_bytes(data)
    return path


def test_missing_file(tmp_path: Path) -> None:
    assert tail_lines(tmp_path / "nope.log", 10) == []
    assert tail_lines(tmp_path, 10) == []  # a directory


@pytest.mark.parametrize(
    ("data", "n", "expected"),
    [
        (b"", 5, []),
        (b"a\nb\nc\n", 2, ["b", "c"]),
        (b"a\nb\nc", 2, ["b", "c"]),  # no trailing newline
        (b"a\r\nb\r\nc\r\n", 2, ["b", "c"]),
        (b"a\nb\n", 10, ["a", "b"]),
        (b"a\n\nb\n", 3, ["a", "", "b"]),
        (b"10%\r20%\r30%\n", 2, ["20%", "30%"]),
        (b"ok\n\xff\xfe\x00junk\n", 1, ["\ufffd\ufffd\x00junk"]),
        (b"a\nb\n", 0, []),
    ],
)
def test_small_files(tmp_path: Path, data: bytes, n: int, expected: list[str]) -> None:
    assert tail_lines(write(tmp_path, data), n) == expected


def test_lines_spanning_blocks(tmp_path: Path) -> None:
    lines = [f"{i:06d} " + "y" * (i % 5000) for i in range(3000)]
    path = write(tmp_path, ("\r\n".join(lines) + "\r\n").encode())
    assert tail_lines(path, 50) == lines[-50:]
    assert tail_lines(path, 3000) == lines
    assert tail_lines(path, 5000) == lines


def test_crlf_split_at_block_boundary(tmp_path: Path) -> None:
    # Put a \r\n pair exactly across the first 64 KiB block boundary from the end.
    tail = b"\nlast\n"
    head = b"x" * (300_000 - len(tail)) + b"\r"
    path = write(tmp_path, b"first\r\n" + head + tail)
    assert tail_lines(path, 1) == ["last"]
    assert tail_lines(path, 2)[1] == "last"


def test_max_bytes_bounds_a_giant_last_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"start\n" + b"z" * 1_000_000)
    [line] = tail_lines(path, 1, max_bytes=100_000)
    assert line == "z" * 100_000


@pytest.mark.slow
def test_one_gigabyte_log(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    # Real data, written fast: one 1 MiB block of 64-byte lines, stamped with its block
    # number (a C-speed replace) and written 1024 times.
    per_block = (1024 * 1024) // 64
    template = b"".join(b"BLOCKNUMB %06d " % i + b"q" * 46 + b"\n" for i in range(per_block))
    try:
        with path.open("wb") as f:
            for block in range(1024):
                f.write(template.replace(b"BLOCKNUMB", b"%09d" % block))
        assert path.stat().st_size == 1024 * 1024 * 1024
        expected = [
            f"{1023:09d} {i:06d} " + "q" * 46 for i in range(per_block - 50, per_block)
        ]
        assert tail_lines(path, 50) == expected
    finally:
        path.unlink(missing_ok=True)
