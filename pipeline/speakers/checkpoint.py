"""Read the float tensors of a PyTorch checkpoint in the legacy (pre-1.6, not zip) format
into numpy, without torch: Resemblyzer's pretrained.pt is one, and importing torch only to
read 17 MB of weights took longer (about 1.5 s) than running the encoder.

The format, as torch.serialization._legacy_load writes it: five pickles in a row (a magic
number, the protocol version, system info, the object whose tensors point at storages by
key, the list of storage keys in file order), then each storage's bytes in that order,
each after its element count as a little-endian int64. The unpickler here knows only the
three names such a file of float tensors uses and refuses anything else, so reading a
file cannot run code (the same promise as torch.load's weights_only).
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001


class BadCheckpoint(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class _TensorRef:
    key: str  # the storage's key
    offset: int  # in elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _FloatStorage:
    """Stands for torch.FloatStorage in a storage's persistent id."""


def _rebuild(
    storage: str, offset: int, shape: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(shape), tuple(stride))


_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch", "FloatStorage"): _FloatStorage,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise BadCheckpoint(f"unexpected {module}.{name} in the checkpoint") from None

    def persistent_load(self, pid: Any) -> str:
        # ('storage', storage type, key, location, element count, view metadata)
        if not (isinstance(pid, tuple) and pid[0] == "storage" and pid[1] is _FloatStorage):
            raise BadCheckpoint(f"unexpected persistent id {pid!r:.60}")
        if pid[5] is not None:
            raise BadCheckpoint("storage views are not supported")
        return str(pid[2])


def _storages(stream: IO[bytes], keys: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for key in keys:
        count = int(np.frombuffer(stream.read(8), dtype="<i8")[0])
        data = stream.read(count * 4)
        if len(data) != count * 4:
            raise BadCheckpoint("the checkpoint ends inside a storage")
        out[key] = np.frombuffer(data, dtype="<f4")
    return out


def _materialise(value: Any, storages: dict[str, np.ndarray]) -> Any:
    if isinstance(value, _TensorRef):
        base = storages[value.key]
        strides = tuple(s * base.itemsize for s in value.stride)
        view = np.lib.stride_tricks.as_strided(base[value.offset :], value.shape, strides)
        return np.array(view, dtype=np.float32)  # a copy: the checkpoint's bytes can go
    if isinstance(value, dict):
        return {k: _materialise(v, storages) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_materialise(v, storages) for v in value)
    return value


def load(path: Path, part: str | None = None) -> Any:
    """The checkpoint's object (or its entry `part`, say the model's weights without the
    optimiser's state), with every tensor as a float32 numpy array."""
    with path.open("rb") as stream:
        try:
            if _Unpickler(stream).load() != MAGIC or _Unpickler(stream).load() != PROTOCOL:
                raise BadCheckpoint(f"{path.name} is not a legacy PyTorch checkpoint")
            info = _Unpickler(stream).load()
            if not (isinstance(info, dict) and info.get("little_endian")):
                raise BadCheckpoint("only little-endian checkpoints are supported")
            result = _Unpickler(stream).load()
            keys = _Unpickler(stream).load()
        except (pickle.UnpicklingError, EOFError, AttributeError) as error:
            raise BadCheckpoint(f"{path.name} is not a legacy PyTorch checkpoint: {error}") from None
        if part is not None:
            if not (isinstance(result, dict) and part in result):
                raise BadCheckpoint(f"{path.name} has no {part!r}")
            result = result[part]
        return _materialise(result, _storages(stream, [str(k) for k in keys]))
