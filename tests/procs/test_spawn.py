"""spawn() and read_lines() with real child processes, and read_lines() edge cases."""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
from pathlib import Path

import pytest

from server.procs.identity import MARKER_ENV, identity_matches, read_identity
from server.procs.lines import read_lines
from server.procs.spawn import spawn
from tests.helpers.children import script
from tests.helpers.spawned import Spawner, read_until


async def collect(stream: asyncio.StreamReader | None, **kwargs: int) -> list[str]:
    assert stream is not None
    return [line async for line in read_lines(stream, **kwargs)]


async def test_thousand_lines_in_order(start_child: Spawner) -> None:
    child = await start_child("printer.py", 1000)
    lines = await collect(child.process.stdout)
    assert lines == [f"line {i}" for i in range(1000)]
    assert await child.process.wait() == 0


async def test_ten_megabyte_line_without_newline(start_child: Spawner) -> None:
    child = await start_child("printer.py", 2, "--long", 10_000_000)
    lines = await collect(child.process.stdout)
    assert lines[:2] == ["line 0", "line 1"]
    pieces = lines[2:]
    assert all(len(p) <= 65536 for p in pieces)
    assert sum(len(p) for p in pieces) == 10_000_000
    assert set("".join(pieces)) == {"x"}
    assert await child.process.wait() == 0


async def test_carriage_return_progress_gives_lines(start_child: Spawner) -> None:
    child = await start_child("printer.py", 5, "--cr")
    assert await collect(child.process.stdout) == [f"line {i}" for i in range(5)]


async def test_marker_is_in_the_child_environment(start_child: Spawner) -> None:
    child = await start_child("env_marker.py", MARKER_ENV, marker="install:42")
    assert await collect(child.process.stdout) == ["install:42"]


async def test_env_argument_replaces_environment_but_keeps_marker(tmp_path: Path) -> None:
    child = await spawn(
        [sys.executable, script("env_marker.py"), "ONLY_THIS"],
        marker="i:1",
        env={"ONLY_THIS": "yes", "PATH": os.environ.get("PATH", "")},
        cwd=str(tmp_path),
    )
    assert await collect(child.process.stdout) == ["yes"]
    await child.process.wait()


async def test_stdin_is_a_pipe_with_eof_on_close(start_child: Spawner) -> None:
    child = await start_child("stdin_eof.py")
    [ready] = await read_until(child, "ready")
    assert ready.endswith(" pipe")
    assert child.process.stdin is not None
    child.process.stdin.close()
    assert await collect(child.process.stdout) == ["eof"]
    assert await child.process.wait() == 0


async def test_spawned_process_leads_its_own_group(start_child: Spawner) -> None:
    child = await start_child("sleeper.py", 30)
    await read_until(child, "ready")
    assert child.pgid == child.process.pid == os.getpgid(child.process.pid)
    assert child.pgid != os.getpgrp()
    assert child.identity == read_identity(child.process.pid)
    ident = child.identity
    assert identity_matches(ident.pid, ident.start_ticks, ident.boot_id, None)
    assert not identity_matches(ident.pid, ident.start_ticks + 1, ident.boot_id, None)
    assert not identity_matches(ident.pid, ident.start_ticks, "other-boot", None)


async def test_missing_executable_raises() -> None:
    with pytest.raises(FileNotFoundError):
        await spawn(["/nonexistent/transcriptor-test-binary"], marker="x:1")


async def test_identity_parses_comm_with_spaces_and_parens(tmp_path: Path) -> None:
    weird = tmp_path / "a) b (c"
    weird.symlink_to(sys.executable)
    child = await spawn([str(weird), script("sleeper.py"), "30"], marker="m:1")
    try:
        assert child.process.stdout is not None
        await child.process.stdout.readline()
        comm = Path(f"/proc/{child.process.pid}/comm").read_text().strip()
        assert ")" in comm and " " in comm
        ident = read_identity(child.process.pid)
        assert ident is not None and ident.start_ticks > 0
        assert identity_matches(ident.pid, ident.start_ticks, ident.boot_id, None)
    finally:
        child.process.kill()  # our own child
        await child.process.wait()
    assert read_identity(child.process.pid) is None


def feed(chunks: list[bytes]) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return reader


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\nb\n"], ["a", "b"]),
        ([b"a\nb"], ["a", "b"]),  # last line without an end
        ([b"a\r\nb\r\n"], ["a", "b"]),  # \r\n is one end, no doubled empty lines
        ([b"a\r", b"\nb"], ["a", "b"]),  # ...even split across reads
        ([b"a\r", b"", b"\r\n"], ["a", ""]),
        ([b"a\n\nb\n"], ["a", "", "b"]),  # real empty lines stay
        ([b"10%\r20%\r30%\n"], ["10%", "20%", "30%"]),
        ([b"\xff\xfeok\n"], ["\ufffd\ufffdok"]),
        ([b""], []),
        ([b"\n"], [""]),
    ],
)
async def test_read_lines_splitting(chunks: list[bytes], expected: list[str]) -> None:
    assert await collect(feed(chunks)) == expected


async def test_read_lines_cuts_long_lines_on_character_boundaries() -> None:
    text = "é" * 10  # 20 bytes
    lines = await collect(feed([text.encode() + b"\nend"]), max_line_bytes=7)
    assert "".join(lines[:-1]) == text
    assert all("\ufffd" not in line for line in lines)
    assert all(len(line.encode()) <= 7 for line in lines)
    assert lines[-1] == "end"


async def test_read_lines_exact_limit_is_not_cut() -> None:
    lines = await collect(feed([b"abcd\nefghi\n"]), max_line_bytes=4)
    assert lines == ["abcd", "efgh", "i"]


def reference_lines(data: bytes, max_line_bytes: int) -> list[str]:
    """What read_lines must give, computed on the whole input at once."""
    parts = re.split(rb"\r\n|\r|\n", data)
    if parts and parts[-1] == b"":
        parts.pop()  # the input ended with a line end
    out = []
    for line in parts:
        while len(line) > max_line_bytes:
            cut = max_line_bytes
            while cut > 0 and max_line_bytes - cut < 3 and (line[cut] & 0xC0) == 0x80:
                cut -= 1
            cut = cut or max_line_bytes
            out.append(line[:cut].decode("utf-8", "replace"))
            line = line[cut:]
        out.append(line.decode("utf-8", "replace"))
    return out


async def test_read_lines_matches_reference_over_random_reads() -> None:
    # Each chunk is handed over as its own read, so line ends split across reads (a \r
    # at the end of one read, its \n at the start of the next) are exercised.
    rng = random.Random(20261127)
    pieces = [b"a", b"bc", "é".encode(), "✓".encode(), b"\xff", b"\r", b"\n", b"\r\n"]
    for _ in range(300):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 80)))
        max_line_bytes = rng.choice([4, 5, 8, 64])
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 10)))) if data else []
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        reader = asyncio.StreamReader()

        async def produce(reader: asyncio.StreamReader = reader, chunks: list[bytes] = chunks) -> None:
            for chunk in chunks:
                reader.feed_data(chunk)
                await asyncio.sleep(0)  # let the reader take this chunk alone
                await asyncio.sleep(0)
            reader.feed_eof()

        producer = asyncio.create_task(produce())
        got = [line async for line in read_lines(reader, max_line_bytes=max_line_bytes)]
        await producer
        assert got == reference_lines(data, max_line_bytes), (data, chunks, max_line_bytes)
