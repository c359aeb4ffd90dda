"""HTTP by hand for the out-of-process tests: multipart/form-data bodies built so a test
controls every byte of an upload, and the response it reads back."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any


def multipart(
    fields: dict[str, str] | None = None,
    *,
    filename: str | None = "upload.wav",
    content: bytes | None = b"",
    file_field: str = "file",
) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type; content=None leaves the file out."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    if content is not None:
        disposition = f'form-data; name="{file_field}"'
        if filename is not None:
            quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
            disposition += f'; filename="{quoted}"'
        parts.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
            + b"Content-Type: application/octet-stream\r\n\r\n"
            + content
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> str:
        try:
            return str(self.json().get("error", ""))
        except ValueError:
            return ""
