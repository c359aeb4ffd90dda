"""Stream a multipart upload to disk, within a byte limit and a disk reserve.

The file lands under a generated name; the uploaded name is kept only as data. Anything
refused (too big, disk full, not audio, bad options) leaves no file behind.
"""

from __future__ import annotations

import asyncio
import errno
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from pipeline.audio import ProbeError, probe
from server.config import Config
from server.web.errors import ApiError

CHUNK_BYTES = 256 * 1024
MAX_FIELD_BYTES = 4096
# Form fields are held in memory, so their number and total size are capped: the job
# options are a dozen short fields, and Content-Length alone bounds nothing (issue #14).
MAX_FIELDS = 32
MAX_FIELDS_TOTAL_BYTES = 16 * 1024
MAX_FILENAME_CHARS = 255
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


@dataclass
class Upload:
    path: Path
    filename: str
    size: int
    duration_seconds: float = 0.0
    fields: dict[str, str] = field(default_factory=dict)
    # Every value of each field, in order: OpenAI's `timestamp_granularities[]` repeats.
    all_fields: dict[str, list[str]] = field(default_factory=dict)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def display_name(raw: str | None) -> str:
    """The uploaded name as data: no directories, no control characters, bounded length."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if name in {"", ".", ".."}:
        name = "upload"
    return name[:MAX_FILENAME_CHARS]


def stored_name(filename: str) -> str:
    suffix = Path(filename).suffix
    return uuid.uuid4().hex + (suffix.lower() if _SAFE_SUFFIX.match(suffix) else "")


PARTIAL_PREFIX = ".partial-"


def remove_partial_uploads(uploads_dir: Path) -> list[Path]:
    """Delete uploads a killed server left half-written; returns what was removed.

    A file is written under a `.partial-` name and renamed only once it is complete, so a
    `.partial-` file at start-up can only be one whose upload never finished.
    """
    removed = []
    for path in uploads_dir.glob(PARTIAL_PREFIX + "*"):
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


async def _next_part(reader: MultipartReader) -> MultipartReader | BodyPartReader | None:
    try:
        return await reader.next()
    except HttpProcessingError as error:
        # A part header aiohttp cannot parse (control characters, bad folding): the client's fault.
        raise ApiError(400, f"malformed multipart body: {str(error.message)[:100]}") from None


class UploadReceiver:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.max_bytes = config.max_upload_bytes
        self.reserve_bytes = config.disk_reserve_bytes

    def _check_room(self, incoming: int) -> None:
        free = free_bytes(self.config.uploads_dir)
        if free - incoming < self.reserve_bytes:
            raise ApiError(
                507,
                "not enough disk space for this upload "
                f"({free // 2**20} MiB free, {self.reserve_bytes // 2**20} MiB must stay free)",
            )

    async def receive(self, request: web.Request) -> Upload:
        """Save the `file` part and collect the other form fields; probe the audio."""
        if request.content_length is not None and request.content_length > self.max_bytes + 65536:
            raise self._too_big()
        if not request.content_type.startswith("multipart/"):
            raise ApiError(400, "expected a multipart/form-data upload with a 'file' field")
        self.config.uploads_dir.mkdir(parents=True, exist_ok=True)
        if request.content_length is not None:
            self._check_room(request.content_length)
        else:
            # Size unknown (chunked): the reserve must be free now; _save checks again.
            self._check_room(0)
        reader = await request.multipart()
        upload: Upload | None = None
        fields: dict[str, str] = {}
        all_fields: dict[str, list[str]] = {}
        field_count = 0
        field_bytes = 0
        try:
            while (part := await _next_part(reader)) is not None:
                # Without a Content-Length the whole body must still stay within the limit.
                if request.content.total_bytes > self.max_bytes + 65536:
                    raise self._too_big()
                if not isinstance(part, BodyPartReader):
                    raise ApiError(400, "nested multipart bodies are not accepted")
                if part.name == "file" and part.filename is not None:
                    if upload is not None:
                        raise ApiError(400, "send one file per upload")
                    upload = await self._save(part)
                    continue
                # Every other part counts, named or not: an unnamed one is still read.
                field_count += 1
                if field_count > MAX_FIELDS:
                    raise ApiError(400, f"too many form fields: at most {MAX_FIELDS} besides 'file'")
                value = await self._read_field(part, MAX_FIELDS_TOTAL_BYTES - field_bytes)
                field_bytes += len(value)
                if part.name:
                    fields[part.name] = value.decode("utf-8", "replace").strip()
                    # Repeated names (OpenAI's timestamp_granularities[]) keep every value.
                    all_fields.setdefault(part.name, []).append(fields[part.name])
            if upload is None:
                raise ApiError(400, "missing 'file' field: attach the audio as 'file'", param="file")
            upload.fields = fields
            upload.all_fields = all_fields
            try:
                upload.duration_seconds = await asyncio.to_thread(probe, upload.path)
            except ProbeError as error:
                # The message names the file by path; a client only knows the name it sent.
                message = str(error).replace(str(upload.path), repr(upload.filename))
                raise ApiError(422, message, param="file") from None
        except BaseException:
            if upload is not None:
                upload.discard()
            raise
        return upload

    async def _read_field(self, part: BodyPartReader, room: int) -> bytes:
        """The part's bytes, refused past MAX_FIELD_BYTES or past `room` (the total left)."""
        data = bytearray()
        while chunk := await part.read_chunk(1024):
            data += chunk
            if len(data) > MAX_FIELD_BYTES:
                raise ApiError(400, f"form field '{str(part.name)[:40]}' is too long")
            if len(data) > room:
                raise ApiError(
                    400, f"form fields are too large: at most {MAX_FIELDS_TOTAL_BYTES} bytes in all"
                )
        return bytes(data)

    async def _save(self, part: BodyPartReader) -> Upload:
        filename = display_name(part.filename)
        path = self.config.uploads_dir / stored_name(filename)
        # Written under a temporary name: a SIGKILL mid-upload leaves only a `.partial-`
        # file, which the next start removes (remove_partial_uploads).
        partial = path.with_name(PARTIAL_PREFIX + path.name)
        size = 0
        checked_at = 0
        try:
            with partial.open("xb") as out:
                while chunk := await part.read_chunk(CHUNK_BYTES):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_big()
                    # Without a Content-Length, keep checking the reserve as bytes arrive.
                    if size - checked_at >= 16 * CHUNK_BYTES:
                        checked_at = size
                        self._check_room(16 * CHUNK_BYTES)
                    out.write(chunk)
                # The periodic check above only runs every 4 MiB: the reserve must still be free.
                self._check_room(0)
        except OSError as error:
            partial.unlink(missing_ok=True)
            if error.errno == errno.ENOSPC:
                raise ApiError(507, "not enough disk space for this upload") from None
            raise
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if size == 0:
            partial.unlink(missing_ok=True)
            raise ApiError(422, "file is empty", param="file")
        partial.replace(path)
        return Upload(path=path, filename=filename, size=size)

    def _too_big(self) -> ApiError:
        return ApiError(413, f"file is larger than the {self.config.max_upload_mb:g} MiB limit", param="file")
