"""An int8 copy of a float16/float32 CTranslate2 model, made once, so loads skip quantizing.

CTranslate2 quantizes a float model to int8 at every load: 0.9 of the 1.0 CPU-seconds
tiny.en takes to load here, and more for larger models. Every job is its own process
that loads its model, so that cost is paid per job (and per standby refill in a burst).
This writes, once per model file, the weights CTranslate2 would have made (per-row
scale 127 / max|row| of each linear and embedding weight; conv weights stay float, as
CTranslate2 keeps them), and loads that. tests/pipeline/test_int8_copy.py checks that
the encoder output is bit-for-bit the same as quantizing at load.

The copy lives in TRANSCRIPTOR_MODEL_CACHE (default ~/.cache/transcriptor/int8), keyed by
the source file, its size and mtime, and the CTranslate2 version. It is written to a
temporary folder and renamed into place, so concurrent jobs never load half a file.
Anything unexpected (an unknown format, bfloat16, a read-only cache) loads the original.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

CACHE_ENV = "TRANSCRIPTOR_MODEL_CACHE"
_FORMAT = 1  # bump when what is written changes
_VERSIONS = (5, 6)  # model.bin binary versions whose layout this reads
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_FLOAT32, _INT8, _FLOAT16 = 0, 1, 4
_STALE_STAGING_SECONDS = 3600  # a staging folder this old was left by a killed job


class UnsupportedModel(ValueError):
    pass


@dataclass(frozen=True)
class _Variable:
    name: str
    shape: tuple[int, ...]
    dtype: int
    offset: int  # of the data in the source file
    size: int

    @property
    def quantizable(self) -> bool:
        # Linear and embedding weights (2-D); CTranslate2 keeps conv (3-D) weights float.
        return (
            self.name.endswith("/weight") and len(self.shape) == 2 and self.dtype in (_FLOAT32, _FLOAT16)
        )


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "transcriptor" / "int8"


def int8_model(model_path: str, say: Callable[[str], None] | None = None) -> str:
    """The folder to load with compute type int8 on CPU: a cached int8 copy of
    `model_path`, made now if missing, or `model_path` itself if no copy applies."""
    source = Path(model_path)
    try:
        import ctranslate2

        stat = (source / "model.bin").stat()
        key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{ctranslate2.__version__}|{_FORMAT}"
        target = cache_root() / f"{source.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        if (target / "model.bin").is_file():
            return str(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        # One writer per copy: jobs starting together wait for it instead of each
        # writing a whole copy of their own.
        with open(target.parent / f".{target.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / "model.bin").is_file():
                _write_copy(source, target)
        return str(target)
    except (UnsupportedModel, struct.error, ValueError, IndexError):
        return model_path  # already int8, or a format this does not read: load as it is
    except OSError as error:
        if say is not None:
            say(f"no int8 copy of the model ({error}); quantizing at load")
        return model_path


def discard(copy: str) -> None:
    """Remove a copy that failed to load, so the next job makes it again."""
    if Path(copy).parent == cache_root():
        shutil.rmtree(copy, ignore_errors=True)


def _read_string(data: mmap.mmap, pos: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<H", data, pos)
    pos += 2
    return data[pos : pos + length - 1].decode(), pos + length


def _read_layout(data: mmap.mmap) -> tuple[int, int, list[_Variable], list[tuple[str, str]]]:
    """(header end, binary version, variables, aliases) of a model.bin."""
    (version,) = struct.unpack_from("<I", data, 0)
    if version not in _VERSIONS:
        raise UnsupportedModel(f"model.bin version {version}")
    _name, pos = _read_string(data, 4)
    pos += 4  # revision
    header_end = pos
    (count,) = struct.unpack_from("<I", data, pos)
    pos += 4
    variables = []
    for _ in range(count):
        name, pos = _read_string(data, pos)
        rank = data[pos]
        shape = struct.unpack_from(f"<{rank}I", data, pos + 1)
        pos += 1 + 4 * rank
        dtype = data[pos]
        (size,) = struct.unpack_from("<I", data, pos + 1)
        pos += 5
        if dtype not in _DTYPES:
            raise UnsupportedModel(f"dtype {dtype} of {name}")
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(_DTYPES[dtype]).itemsize
        if size != expected or pos + size > len(data):
            raise UnsupportedModel(f"{name}: {size} bytes, expected {expected}")
        variables.append(_Variable(name, tuple(shape), dtype, pos, size))
        pos += size
    (count,) = struct.unpack_from("<I", data, pos)
    pos += 4
    aliases = []
    for _ in range(count):
        alias, pos = _read_string(data, pos)
        name, pos = _read_string(data, pos)
        aliases.append((alias, name))
    return header_end, version, variables, aliases


def quantize_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weight, float32 scale per row), as CTranslate2 quantizes a 2-D weight."""
    values = weight.astype(np.float32)
    amax = np.amax(np.absolute(values), axis=1)
    amax[amax == 0] = 127.0
    amax = np.maximum(amax, np.float32(127) / np.finfo(np.float32).max)
    scale = (np.float32(127.0) / amax).astype(np.float32)
    return np.rint(values * scale[:, None]).astype(np.int8), scale


def _write_string(out: BinaryIO, text: str) -> None:
    raw = text.encode()
    out.write(struct.pack("<H", len(raw) + 1) + raw + b"\0")


def _remove_stale_staging(root: Path) -> None:
    # A job killed mid-copy (a stop, SIGKILL) never ran its cleanup.
    for staging in root.glob(".staging-*"):
        try:
            if time.time() - staging.stat().st_mtime > _STALE_STAGING_SECONDS:
                shutil.rmtree(staging, ignore_errors=True)
        except FileNotFoundError:
            continue


def _write_copy(source: Path, target: Path) -> None:
    _remove_stale_staging(target.parent)
    with (
        open(source / "model.bin", "rb") as file,
        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data,
    ):
        header_end, _version, variables, aliases = _read_layout(data)
        if not any(v.quantizable for v in variables):
            raise UnsupportedModel("nothing to quantize")
        scaled = {v.name for v in variables if v.quantizable}
        count = len(variables) + len(scaled)
        # An alias of a quantized weight needs its scale too (tied output projections).
        aliases = aliases + [(a + "_scale", n + "_scale") for a, n in aliases if n in scaled]
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
        try:
            with open(staging / "model.bin", "wb") as out:
                out.write(data[:header_end])
                out.write(struct.pack("<I", count))
                for variable in variables:
                    if not variable.quantizable:
                        raw = data[variable.offset : variable.offset + variable.size]
                        _write_variable(out, variable.name, variable.shape, variable.dtype, raw)
                        continue
                    # A view of the mapped file, not a copy; gone when the call returns, as
                    # the map cannot close while a view of it is alive.
                    quantized, scale = quantize_rows(_view(data, variable))
                    _write_variable(out, variable.name, variable.shape, _INT8, quantized.tobytes())
                    _write_variable(out, variable.name + "_scale", scale.shape, _FLOAT32, scale.tobytes())
                out.write(struct.pack("<I", len(aliases)))
                for alias, name in aliases:
                    _write_string(out, alias)
                    _write_string(out, name)
                out.flush()
                os.fsync(out.fileno())  # never a renamed folder holding half a model
            for other in source.iterdir():
                if other.is_file() and other.name != "model.bin":
                    shutil.copy2(other, staging / other.name)
            if target.exists() and not (target / "model.bin").is_file():
                shutil.rmtree(target)  # half made by a copy of an older version: replace it
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _view(data: mmap.mmap, variable: _Variable) -> np.ndarray:
    dtype = _DTYPES[variable.dtype]
    count = variable.size // np.dtype(dtype).itemsize
    return np.frombuffer(data, dtype, count=count, offset=variable.offset).reshape(variable.shape)


def _write_variable(out: BinaryIO, name: str, shape: tuple[int, ...], dtype: int, raw: bytes) -> None:
    _write_string(out, name)
    header = struct.pack(f"<B{len(shape)}IBI", len(shape), *shape, dtype, len(raw))
    out.write(header)
    out.write(raw)
