"""Bad uploads get a clear 4xx and leave no file and no row behind."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.app import create_app
from tests.helpers.app_api import upload, wait_status


async def nothing_left(client: Any, config: Any) -> None:
    assert list(config.uploads_dir.iterdir()) == []
    jobs = await (await client.get("/api/jobs")).json()
    assert jobs["jobs"] == []


@pytest.mark.parametrize(
    ("content", "filename", "status", "message"),
    [
        (b"", "empty.mp3", 422, "empty"),
        (b"hello, this is plain text and not audio at all\n" * 20, "notes.mp3", 422, "audio"),
        (b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:10,\nfile:///etc/passwd\n", "list.mp3", 422, ""),
        (b"ffconcat version 1.0\nfile '/etc/passwd'\n", "concat.mp3", 422, ""),
    ],
)
async def test_refused_content(aiohttp_client, make_config, tmp_path, content, filename, status, message):
    config = make_config()
    client = await aiohttp_client(create_app(config))
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    response = await upload(client, path, filename=filename)
    assert response.status == status
    body = await response.json()
    assert message in body["error"]
    await nothing_left(client, config)


async def test_truncated_audio_refused(aiohttp_client, make_config, tone, tmp_path):
    config = make_config()
    client = await aiohttp_client(create_app(config))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(tone.read_bytes()[:30])
    response = await upload(client, cut)
    assert response.status == 422
    await nothing_left(client, config)


async def test_too_big_is_413(aiohttp_client, make_config, tone):
    size = tone.stat().st_size
    config = make_config(max_upload_mb=(size - 1) / 1024 / 1024)
    client = await aiohttp_client(create_app(config))
    response = await upload(client, tone)
    assert response.status == 413
    assert "limit" in (await response.json())["error"]
    await nothing_left(client, config)


async def test_exactly_at_limit_is_accepted(aiohttp_client, make_config, tone):
    config = make_config(max_upload_mb=tone.stat().st_size / 1024 / 1024)
    client = await aiohttp_client(create_app(config))
    assert (await upload(client, tone)).status == 201


async def test_disk_reserve_gives_507(aiohttp_client, make_config, tone):
    config = make_config(disk_reserve_mb=10**9)  # more than any disk here has free
    client = await aiohttp_client(create_app(config))
    response = await upload(client, tone)
    assert response.status == 507
    await nothing_left(client, config)


def raw_multipart(filename: str, content: bytes) -> tuple[bytes, str]:
    """A body with the filename exactly as given (aiohttp's FormData would %-quote it)."""
    boundary = "hostileboundary1234"
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
        f"filename=\"{filename}\"\r\nContent-Type: audio/wav\r\n\r\n"
    ).encode()
    body = head + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("hostile", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("/abs/path/x.wav", "x.wav"),
        ("..", "upload"),
    ],
)
async def test_hostile_filename_is_data_only(aiohttp_client, make_config, tone, hostile, shown):
    config = make_config()
    client = await aiohttp_client(create_app(config))
    body, content_type = raw_multipart(hostile, tone.read_bytes())
    response = await client.post("/api/jobs", data=body, headers={"Content-Type": content_type})
    assert response.status == 201, await response.text()
    job = await response.json()
    assert job["filename"] == shown
    stored = Path(job["original_path"])
    assert stored.parent == config.uploads_dir
    assert [p.name for p in config.uploads_dir.iterdir()] == [stored.name]
    assert len(stored.stem) == 32 and "passwd" not in stored.name


async def test_missing_file_field(aiohttp_client, make_config):
    config = make_config()
    client = await aiohttp_client(create_app(config))
    form = aiohttp.FormData()
    form.add_field("model", "tiny.en")
    response = await client.post("/api/jobs", data=form)
    assert response.status == 400
    assert "file" in (await response.json())["error"]
    await nothing_left(client, config)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("processes", "-1"),
        ("processes", "abc"),
        ("threads", "1.5"),
        ("model", "../../x"),
        ("language", "english; rm -rf"),
        ("on_disconnect", "explode"),
        ("chunk_seconds", "10"),  # with the default 2 s overlap that is fine, so pair it:
    ],
)
async def test_nonsense_options(aiohttp_client, make_config, tone, field, value):
    config = make_config()
    client = await aiohttp_client(create_app(config))
    fields = {field: value}
    if field == "chunk_seconds":
        fields["overlap_seconds"] = "6"
    response = await upload(client, tone, **fields)
    assert response.status == 400
    assert (await response.json())["error"]
    await nothing_left(client, config)


async def test_unknown_job_is_json_404(aiohttp_client, make_config):
    client = await aiohttp_client(create_app(make_config()))
    for path in ("/api/jobs/999", "/api/jobs/abc", "/api/jobs/999/logs", "/api/jobs/1/transcript.txt"):
        response = await client.get(path)
        assert response.status == 404
        assert "error" in await response.json()
    page = await client.get("/jobs/999")
    assert page.status == 404


def many_fields_body(tone: bytes, count: int, size: int) -> tuple[bytes, str]:
    """The file first (so it is stored before the fields are refused), then `count` fields."""
    boundary = "manyfieldsboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.wav"\r\n'
        f"Content-Type: audio/wav\r\n\r\n".encode()
        + tone
        + b"\r\n"
    ]
    for i in range(count):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n'.encode()
            + b"x" * size
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


async def chunked(body: bytes, piece: int = 65536) -> Any:
    for start in range(0, len(body), piece):
        yield body[start : start + piece]


@pytest.mark.parametrize("transfer", ["length", "chunked"])
@pytest.mark.parametrize(("count", "size", "message"), [(20_000, 1024, "too large"), (20_000, 1, "too many")])
async def test_form_fields_are_capped(aiohttp_client, make_config, tone, transfer, count, size, message):
    config = make_config()
    client = await aiohttp_client(create_app(config))
    body, content_type = many_fields_body(tone.read_bytes(), count, size)
    data = io.BytesIO(body) if transfer == "length" else chunked(body)
    response = await client.post("/api/jobs", data=data, headers={"Content-Type": content_type})
    assert response.status == 400, await response.text()
    assert message in (await response.json())["error"]
    await nothing_left(client, config)


async def test_chunked_upload_holds_the_size_limit(aiohttp_client, make_config, tone):
    size = tone.stat().st_size
    config = make_config(max_upload_mb=(size - 1) / 1024 / 1024)
    client = await aiohttp_client(create_app(config))
    body, content_type = raw_multipart("t.wav", tone.read_bytes())
    response = await client.post("/api/jobs", data=chunked(body), headers={"Content-Type": content_type})
    assert response.status == 413
    await nothing_left(client, config)


async def test_chunked_upload_with_a_few_fields_is_accepted(aiohttp_client, make_config, tone):
    config = make_config()
    client = await aiohttp_client(create_app(config))
    body, content_type = many_fields_body(tone.read_bytes(), 3, 10)
    response = await client.post("/api/jobs", data=chunked(body), headers={"Content-Type": content_type})
    assert response.status == 201, await response.text()


@pytest.fixture
def empty_model_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A Hugging Face cache holding no model, for the server and the jobs it starts."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("base", "model 'base' is not on this machine, and model downloads are off"),
        ("no-such-model", "unknown model 'no-such-model'"),
    ],
)
async def test_model_not_here_is_refused_at_upload(
    aiohttp_client, make_config, tone, empty_model_cache, model, message
):
    config = make_config(pipeline_command=(), standby=0)
    client = await aiohttp_client(create_app(config))
    response = await upload(client, tone, model=model)
    assert response.status == 400
    assert message in (await response.json())["error"]
    await nothing_left(client, config)


async def test_model_downloads_allowed_accept_a_known_model_only(
    aiohttp_client, make_config, tone, empty_model_cache
):
    config = make_config(pipeline_command=(), standby=0, allow_model_downloads=True)
    client = await aiohttp_client(create_app(config))
    response = await upload(client, tone, model="no-such-model")
    assert response.status == 400
    assert "unknown model 'no-such-model'" in (await response.json())["error"]
    await nothing_left(client, config)
    response = await upload(client, tone, model="base", on_disconnect="keep")
    assert response.status == 201
    # No network here: the job that would download fails, with the reason in its row.
    job = await wait_status(client, (await response.json())["id"], {"failed"}, timeout=60)
    assert "model 'base' is not available offline" in job["error_message"], job
