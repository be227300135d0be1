"""A minimal, fast GGUF header reader for listing many files.

It reads the key/value metadata (skipping big arrays such as the vocabulary without decoding them)
and, only when ``general.file_type`` is missing, the tensor infos; it never touches tensor data,
so a 100 GB file costs a few megabytes of reading. For full model inspection use ``model.py``.
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

GGUF_MAGIC = b"GGUF"
#: never read more than this much header (a 256k-token vocabulary is about 6 MiB)
MAX_HEADER_BYTES = 256 * 1024 * 1024

# GGUF value types -> fixed size in bytes (strings and arrays are handled apart)
_SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_SCALAR_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
               10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
_STRING, _ARRAY = 8, 9
_WANTED = ("general.architecture", "general.file_type", "general.name", "split.count")


class GGUFHeaderError(ValueError):
    """The file is not a GGUF file, or its header is truncated or malformed."""


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    tensor_count: int
    kv_count: int
    architecture: str | None
    file_type: str | None  # "Q4_K_M", "F16", ... (from general.file_type or the tensor types)
    name: str | None
    split_count: int


class _Reader:
    """Buffered little-endian reads with a hard cap on how much is read."""

    def __init__(self, fh: BinaryIO, limit: int) -> None:
        self._fh = fh
        self._buf = b""
        self._pos = 0
        self._consumed = 0
        self._limit = limit

    def _fill(self, n: int) -> None:
        if len(self._buf) - self._pos >= n:
            return
        if self._consumed + n > self._limit:
            raise GGUFHeaderError("the header is implausibly large")
        chunk = self._fh.read(max(n, 1 << 20))
        self._buf = self._buf[self._pos :] + chunk
        self._pos = 0
        if len(self._buf) < n:
            raise GGUFHeaderError("the file ends inside its header (truncated download?)")

    def read(self, n: int) -> bytes:
        self._fill(n)
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        self._consumed += n
        return data

    def skip(self, n: int) -> None:
        while n > 0:
            step = min(n, 1 << 20)
            self._fill(step)
            self._pos += step
            self._consumed += step
            n -= step

    def unpack(self, fmt: str, size: int) -> Any:
        self._fill(size)
        value = struct.unpack_from(fmt, self._buf, self._pos)[0]
        self._pos += size
        self._consumed += size
        return value

    def u32(self) -> int:
        return int(self.unpack("<I", 4))

    def u64(self) -> int:
        return int(self.unpack("<Q", 8))

    def string(self, max_len: int = 1 << 24) -> str:
        length = self.u64()
        if length > max_len:
            raise GGUFHeaderError(f"a string of {length} bytes in the header is implausible")
        return self.read(length).decode("utf-8", "replace")

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            length = self.u64()
            if length > 1 << 24:
                raise GGUFHeaderError("a string in the header is implausibly long")
            self.skip(length)


def _read_value(r: _Reader, vtype: int, keep: bool) -> Any:
    if vtype in _SCALAR_SIZE:
        return r.unpack(_SCALAR_FMT[vtype], _SCALAR_SIZE[vtype])
    if vtype == _STRING:
        if keep:
            return r.string()
        r.skip_strings(1)
        return None
    if vtype == _ARRAY:
        item_type = r.u32()
        count = r.u64()
        if item_type in _SCALAR_SIZE:
            r.skip(_SCALAR_SIZE[item_type] * count)
        elif item_type == _STRING:
            r.skip_strings(count)
        elif item_type == _ARRAY:
            for _ in range(count):
                _read_value(r, _ARRAY, keep=False)
        else:
            raise GGUFHeaderError(f"unknown array item type {item_type}")
        return None
    raise GGUFHeaderError(f"unknown metadata value type {vtype}")


def file_type_name(value: int) -> str:
    """``15`` -> ``"Q4_K_M"``, using llama.cpp's ``llama_ftype`` numbering."""
    from gguf import LlamaFileType

    try:
        name = LlamaFileType(value).name
    except ValueError:
        return f"type {value}"
    for prefix in ("MOSTLY_", "ALL_"):
        name = name.removeprefix(prefix)
    return name


def _dominant_tensor_type(r: _Reader, tensor_count: int) -> str | None:
    """Most common quantized type by element count, for files without ``general.file_type``."""
    from gguf import GGMLQuantizationType

    weights: collections.Counter[int] = collections.Counter()
    for _ in range(tensor_count):
        r.string(max_len=1 << 16)
        n_dims = r.u32()
        if n_dims > 8:
            raise GGUFHeaderError("a tensor with more than 8 dimensions is implausible")
        elements = 1
        for _ in range(n_dims):
            elements *= r.u64()
        ttype = r.u32()
        r.u64()
        if n_dims >= 2:
            weights[ttype] += elements
    if not weights:
        return None
    ttype = weights.most_common(1)[0][0]
    try:
        return GGMLQuantizationType(ttype).name
    except ValueError:
        return f"type {ttype}"


def read_gguf_header(path: str | Path, max_bytes: int = MAX_HEADER_BYTES) -> GGUFHeader:
    """Read what a model list shows. Raises :class:`GGUFHeaderError` or ``OSError``."""
    with open(path, "rb") as fh:
        r = _Reader(fh, max_bytes)
        if r.read(4) != GGUF_MAGIC:
            raise GGUFHeaderError("not a GGUF file (the first bytes are not 'GGUF')")
        version = r.u32()
        if version not in (2, 3):
            raise GGUFHeaderError(f"GGUF version {version} is not supported (2 or 3 are)")
        tensor_count = r.u64()
        kv_count = r.u64()
        if tensor_count > 1 << 24 or kv_count > 1 << 20:
            raise GGUFHeaderError("the header's counts are implausible (corrupt file?)")
        found: dict[str, Any] = {}
        for _ in range(kv_count):
            key = r.string(max_len=1 << 16)
            vtype = r.u32()
            found_value = _read_value(r, vtype, keep=key in _WANTED)
            if key in _WANTED:
                found[key] = found_value
        ftype = found.get("general.file_type")
        file_type = file_type_name(int(ftype)) if isinstance(ftype, int) else None
        if file_type is None:
            file_type = _dominant_tensor_type(r, tensor_count)
        arch = found.get("general.architecture")
        name = found.get("general.name")
        split = found.get("split.count")
        return GGUFHeader(
            version=version,
            tensor_count=tensor_count,
            kv_count=kv_count,
            architecture=arch if isinstance(arch, str) else None,
            file_type=file_type,
            name=name if isinstance(name, str) else None,
            split_count=int(split) if isinstance(split, int) and split > 0 else 1,
        )


def is_gguf(path: str | Path) -> bool:
    """True when the file starts with the GGUF magic (for Ollama blobs without an extension)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False
