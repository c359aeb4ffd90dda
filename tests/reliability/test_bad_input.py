"""Bad uploads against a real server: the right 4xx, a clear message, nothing left behind.

"Nothing left behind" is checked on disk and in the database file itself: no file in
uploads/, no job row. Playlists point at a real, valid audio file, so a server that
followed them would accept the upload instead of refusing it.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import struct
import subprocess
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.audio import tone_wav
from tests.helpers.fake import fake_pipeline_args
from tests.helpers.forms import Response, multipart
from tests.helpers.server_proc import ServerProcess
from tests.helpers.waiting import wait_for

LIMIT_MB = 1
LIMIT_BYTES = LIMIT_MB * 1024 * 1024


def make_mp3(path: Path, seconds: float = 6.0) -> Path:
    """A real MP3 (with a Xing header that declares its duration), made at test time."""
    if shutil.which("ffmpeg"):
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
             "-c:a", "libmp3lame", "-b:a", "64k", str(path)],
            check=True, timeout=60,
        )  # fmt: skip
        return path
    import av  # PyAV, which the server itself depends on

    with av.open(str(path), "w", format="mp3") as out:
        stream = out.add_stream("mp3", rate=16000)
        wav = tone_wav(path.with_suffix(".wav"), seconds=seconds)
        with av.open(str(wav)) as source:
            for frame in source.decode(audio=0):
                frame.pts = None
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def wav_of_size(path: Path, size: int) -> Path:
    """A valid 16-bit mono WAV of exactly `size` bytes (44 of them header)."""
    frames = (size - 44) // 2
    assert 44 + 2 * frames == size, "size must be even"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\x10\x00" * frames)
    assert path.stat().st_size == size
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for every bad upload here (each case checks it changed nothing)."""
    base = tmp_path_factory.mktemp("bad-input")
    proc = ServerProcess(
        base / "data", ["--max-upload-mb", str(LIMIT_MB), *fake_pipeline_args("--lines", "2")]
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bad-input-files")
    tone = tone_wav(base / "real.wav", seconds=2.0)
    mp3 = make_mp3(base / "real.mp3")
    return {"tone": tone, "mp3": mp3}


def rows(server: ServerProcess) -> list[tuple[int, str]]:
    with sqlite3.connect(f"file:{server.data_dir / 'transcriptor.db'}?mode=ro", uri=True) as conn:
        return list(conn.execute("SELECT id, status FROM transcription_jobs ORDER BY id"))


def uploads(server: ServerProcess) -> list[str]:
    return sorted(p.name for p in (server.data_dir / "uploads").iterdir())


def refused(server: ServerProcess, send: Callable[[], Response], status: int, words: str) -> Response:
    """Send a bad request; check its status and message, and that it left nothing behind."""
    before_rows, before_files = rows(server), uploads(server)
    response = send()
    assert response.status == status, (response.status, response.body[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    message = response.error
    assert message and words.lower() in message.lower(), message
    assert "Traceback" not in message and len(message) < 400, message
    assert str(server.data_dir) not in message, "the message must not reveal the server's paths"
    assert uploads(server) == before_files
    assert rows(server) == before_rows
    return response


def test_empty_file(server):
    refused(server, lambda: server.post_upload(b"", "empty.mp3"), 422, "empty")


def test_text_named_mp3(server):
    text = b"These are meeting notes, not audio at all.\n" * 200
    refused(server, lambda: server.post_upload(text, "notes.mp3"), 422, "not an audio file")


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.02])
def test_truncated_mp3(server, files, keep):
    data = files["mp3"].read_bytes()
    cut = data[: int(len(data) * keep)]
    refused(server, lambda: server.post_upload(cut, "cut.mp3"), 422, "")
    # The whole file, for contrast, is fine audio.
    assert len(data) > 10_000


PLAYLISTS = {
    "hls": "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{target}\n#EXT-X-ENDLIST\n",
    "hls-file-url": "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\nfile://{target}\n#EXT-X-ENDLIST\n",
    "m3u": "#EXTM3U\n#EXTINF:2,real\n{target}\n",
    "ffconcat": "ffconcat version 1.0\nfile '{target}'\n",
    "sdp": "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 9 RTP/AVP 0\n",
}


@pytest.mark.parametrize("kind", sorted(PLAYLISTS))
@pytest.mark.parametrize("name", ["talk.mp3", "talk.m3u8", "talk.wav"])
def test_playlist_naming_a_real_local_file_is_refused(server, files, kind, name):
    target = files["tone"]  # valid audio: following the playlist would make it "work"
    body = PLAYLISTS[kind].format(target=target).encode()
    refused(server, lambda: server.post_upload(body, name), 422, "")


HOSTILE_NAMES = [
    "../../etc/passwd",
    "../../../../../../tmp/escaped.wav",
    "/etc/passwd",
    "..",
    ".",
    "",
    "a/../../b.wav",
    "..\\..\\windows\\win.ini",
    "name\r\nX-Injected: 1.wav",
    "tab\tand\x7fdel.wav",
    "x" * 5000 + ".wav",
    "\u202egnp.wav",  # right-to-left override
    "transcriptor.db",
    "../transcriptor.db",
    "CON",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_hostile_filename_with_junk_is_refused(server, name):
    # A CR LF or a control character breaks the part's own header: 400 for the body, else
    # the junk is looked at and refused as not audio.
    status = 400 if any(not ch.isprintable() and ch != "\u202e" for ch in name) else 422
    refused(server, lambda: server.post_upload(b"junk" * 100, name), status, "")


def test_hostile_filenames_with_real_audio_are_stored_safely(server, files, tmp_path):
    """Real audio under a hostile name is accepted, but the name is only ever data."""
    db_before = (server.data_dir / "transcriptor.db").stat().st_size
    outside_before = sorted(p.name for p in server.data_dir.parent.iterdir())
    data = files["tone"].read_bytes()
    for name in HOSTILE_NAMES:
        response = server.post_upload(data, name, on_disconnect="keep")
        if any(not ch.isprintable() and ch != "\u202e" for ch in name):
            # The part's header itself is malformed: a 400 is right, a 500 is not.
            assert response.status in (201, 400), (name, response.status, response.body[:200])
            if response.status != 201:
                continue
        assert response.status == 201, (name[:40], response.status, response.body[:200])
        job = response.json()
        stored = Path(job["original_path"])
        assert stored.parent == server.data_dir / "uploads", stored
        assert stored.is_file() and stored.read_bytes() == data
        assert "/" not in job["filename"] and "\\" not in job["filename"], job["filename"]
        assert job["filename"] not in ("", ".", ".."), job["filename"]
        assert all(ch.isprintable() for ch in job["filename"]), repr(job["filename"])
        assert len(job["filename"]) <= 255
        final = server.wait_final(job["id"], timeout=20)
        assert final["status"] == "completed", final
        for kind in ("txt", "json"):
            download = server.request("GET", f"/api/jobs/{job['id']}/transcript.{kind}")
            assert download.status == 200
            disposition = download.headers["content-disposition"]
            assert "/" not in disposition and "\r" not in disposition and "\n" not in disposition
    assert not Path("/tmp/escaped.wav").exists()
    assert sorted(p.name for p in server.data_dir.parent.iterdir()) == outside_before
    assert (server.data_dir / "transcriptor.db").stat().st_size >= db_before


def test_one_byte_over_the_limit_is_413_and_exactly_at_it_is_accepted(server, tmp_path):
    at_limit = wav_of_size(tmp_path / "at-limit.wav", LIMIT_BYTES)
    over = at_limit.read_bytes() + b"\0"
    refused(server, lambda: server.post_upload(over, "over.wav"), 413, "limit")
    # Sent chunked, with no Content-Length to check up front: still 413, still nothing left.
    refused(server, lambda: server.post_upload(over, "over.wav", chunked=True), 413, "limit")
    response = server.post_upload(at_limit.read_bytes(), "at-limit.wav", on_disconnect="keep")
    assert response.status == 201, response.body[:300]
    assert server.wait_final(response.json()["id"])["status"] == "completed"


def test_far_over_the_limit_is_refused_without_reading_it_all(server):
    """A 64 MB body against a 1 MB limit: refused early, and the server stays responsive."""
    chunk = b"\0" * (1 << 20)
    sent = {"bytes": 0}

    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(64):
            sent["bytes"] += len(chunk)
            yield chunk
        yield b"\r\n--b--\r\n"

    def send() -> Response:
        try:
            return server.request(
                "POST", "/api/jobs", body=body(), chunked=True,
                headers={"Content-Type": "multipart/form-data; boundary=b"},
            )  # fmt: skip
        except (BrokenPipeError, ConnectionResetError):
            # The server answered 413 and closed before we finished sending: also fine,
            # provided nothing was kept (checked by refused via a second request below).
            return Response(413, {"content-type": "application/json"}, b'{"error": "limit"}')

    refused(server, send, 413, "limit")
    assert server.health()["status"] == "ok"


def test_missing_file_field(server):
    refused(server, lambda: server.post_upload(None, model="tiny.en"), 400, "file")
    # A `file` part that is a plain field (no filename) is not a file either.
    refused(server, lambda: server.post_upload(b"RIFF", None), 400, "file")
    # And a body that is not multipart at all.
    refused(
        server,
        lambda: server.request(
            "POST", "/api/jobs", body=b'{"file": "x"}', headers={"Content-Type": "application/json"}
        ),
        400,
        "multipart",
    )


BAD_OPTIONS = [
    ({"processes": "-1"}, "processes"),
    ({"processes": "0"}, "processes"),
    ({"processes": "1.5"}, "whole"),
    ({"processes": "1e9"}, "processes"),
    ({"processes": "nan"}, "processes"),
    ({"threads": "inf"}, "threads"),
    ({"threads": "two"}, "threads"),
    ({"chunk_seconds": "-5"}, "chunk_seconds"),
    ({"chunk_seconds": "4", "overlap_seconds": "3"}, "overlap"),
    ({"overlap_seconds": "1e400"}, "overlap_seconds"),
    ({"model": "../../x"}, "model"),
    ({"model": "/etc/passwd"}, "model"),
    ({"model": "tiny.en; rm -rf /"}, "model"),
    ({"model": "-h"}, "model"),
    ({"model": "--help"}, "model"),
    ({"language": "../../etc"}, "language"),
    ({"language": "--help"}, "language"),
    ({"on_disconnect": "explode"}, "on_disconnect"),
    ({"processes": "1" * 5000}, "too long"),
]


@pytest.mark.parametrize(("fields", "words"), BAD_OPTIONS, ids=[str(f)[:40] for f, _ in BAD_OPTIONS])
def test_nonsense_options(server, files, fields, words):
    data = files["tone"].read_bytes()
    refused(server, lambda: server.post_upload(data, "fine.wav", **fields), 400, words)


# -- disk full --------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs of the test's own, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path, leave: int) -> Path:
    """Fill the filesystem holding `path` until about `leave` bytes stay free."""
    filler = path / "filler.bin"
    with filler.open("wb") as out:
        while (free := shutil.disk_usage(path).free) > leave + (1 << 20):
            out.write(b"\0" * min(free - leave, 1 << 20))
            out.flush()
    return filler


def test_disk_full_is_507_and_keeps_the_database_and_earlier_jobs(start_server, small_fs, tmp_path, record):
    server = start_server(fake=["--lines", "3"], data_dir=small_fs / "data")
    earlier = server.upload(tone_wav(tmp_path / "first.wav", seconds=1.0), on_disconnect="keep")
    assert server.wait_final(earlier["id"])["status"] == "completed"
    earlier_files = uploads(server)
    filler = fill(small_fs, leave=256 * 1024)
    big = tone_wav(tmp_path / "big.wav", seconds=60.0).read_bytes()  # about 1.9 MB
    results = {}
    for how, chunked in (("content-length", False), ("chunked", True)):
        response = refused(
            server, lambda chunked=chunked: server.post_upload(big, "big.wav", chunked=chunked), 507, "disk"
        )
        results[how] = response.error
    assert uploads(server) == earlier_files
    assert server.health()["status"] == "ok"
    # Free the space again: the server carries on, the earlier job and the database intact.
    filler.unlink()
    later = server.upload(tone_wav(tmp_path / "later.wav", seconds=1.0), on_disconnect="keep")
    assert server.wait_final(later["id"])["status"] == "completed"
    first = server.job(earlier["id"])
    assert first["status"] == "completed"
    assert server.request("GET", f"/api/jobs/{earlier['id']}/transcript.txt").status == 200
    with sqlite3.connect(f"file:{server.data_dir / 'transcriptor.db'}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [r[0] for r in rows(server)] == [earlier["id"], later["id"]]
    record(refusals=results)


def test_reserve_above_free_space_is_507(start_server, tmp_path, record):
    server = start_server(fake=["--lines", "3"])
    earlier = server.upload(tone_wav(tmp_path / "first.wav", seconds=1.0), on_disconnect="keep")
    assert server.wait_final(earlier["id"])["status"] == "completed"
    server.stop()
    free_mb = shutil.disk_usage(server.data_dir).free // 2**20
    reserved = ServerProcess(
        server.data_dir, ["--disk-reserve-mb", str(free_mb + 1024), *fake_pipeline_args("--lines", "3")]
    )
    # The reserve flag after conftest's default --disk-reserve-mb 0 wins (argparse: last one).
    reserved.start()
    try:
        data = (tmp_path / "first.wav").read_bytes()
        response = refused(reserved, lambda: reserved.post_upload(data, "x.wav"), 507, "disk")
        response = refused(reserved, lambda: reserved.post_upload(data, "x.wav", chunked=True), 507, "disk")
        assert reserved.job(earlier["id"])["status"] == "completed"
        record(message=response.error)
    finally:
        reserved.stop()


@pytest.mark.parametrize(
    "job",
    [
        "99999999999999999999999",
        "9223372036854775808",
        "0",
        "-1",
        "1e3",
        "%C2%B2",
        "%00",
        "..%2f..%2fetc%2fpasswd",
    ],
)
def test_job_ids_that_are_not_jobs_are_404(server, job):
    for method, path in (
        ("GET", f"/api/jobs/{job}"),
        ("GET", f"/api/jobs/{job}/logs"),
        ("GET", f"/api/jobs/{job}/transcript.txt"),
        ("POST", f"/api/jobs/{job}/stop"),
    ):
        response = server.request(method, path)
        assert response.status == 404, (method, path, response.status, response.body[:200])
        assert response.error
    page = server.request("GET", f"/jobs/{job}")
    assert page.status == 404, (job, page.status)


@pytest.mark.parametrize("how", ["reset", "half-close"])
def test_upload_cut_off_midway_leaves_nothing(server, files, how):
    """The client goes away in the middle of the file: no partial upload, no row."""
    before_rows, before_files = rows(server), uploads(server)
    body, content_type = multipart({}, filename="cut.wav", content=tone_wav_bytes(files, 900_000))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = (
            f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[: len(body) // 2])
        # The server is writing the file now.
        wait_for(lambda: uploads(server) != before_files, 10, "the partial upload to start")
        if how == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            sock.shutdown(socket.SHUT_WR)
    wait_for(lambda: uploads(server) == before_files, 10, "the partial upload to be removed")
    assert rows(server) == before_rows
    assert server.health()["status"] == "ok"


def tone_wav_bytes(files: dict[str, Path], size: int) -> bytes:
    data = files["tone"].read_bytes()
    return (data * (size // len(data) + 1))[:size]


def test_server_logged_no_tracebacks(server):
    # Last in this module (pytest keeps file order): every refusal above was handled quietly.
    assert server.health()["status"] == "ok"
    output = server.output()
    assert "Traceback" not in output, output[-3000:]
    assert "unhandled error" not in output


async def _slow_upload(port: int, total: int, sent_first: int) -> socket.socket:
    """Start an upload declaring `total` bytes, send `sent_first` of them, keep it open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    boundary = "slowboundary"
    head = (
        f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.wav"\r\n\r\n'
    ).encode()
    sock.sendall(head + b"\0" * sent_first)
    return sock


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_server_stopped_during_an_upload_leaves_no_partial_file(start_server, how, record):
    server = start_server(fake=["--lines", "2"])
    sock = await _slow_upload(server.port, 10_000_000, 2_000_000)
    try:
        wait_for(lambda: uploads(server) != [], 10, "the upload to start")
        if how == "SIGTERM":
            server.stop()
        else:
            server.sigkill()
    finally:
        sock.close()
    left_after_stop = uploads(server)
    server.start()
    # After a restart at the latest, no partial upload is left and no row names one.
    wait_for(lambda: uploads(server) == [], 5, f"the partial upload to be gone (left: {uploads(server)})")
    assert rows(server) == []
    record(**{f"left_after_{how}": len(left_after_stop)})
