"""A fast, defensive reader of a GGUF file's header: metadata and tensor infos, never tensor data.

The gguf package's ``GGUFReader`` decodes every token string of the vocabulary (about 8 s for
Gemma's 262k tokens); this parser skips big arrays by arithmetic on their declared sizes, so a
header of any size costs milliseconds. Every length and count is checked against the bytes the file
really has, so truncated or hostile files fail fast with :class:`GGUFFormatError`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
#: arrays up to this many items are decoded; longer ones (vocabularies) are only skipped
SMALL_ARRAY = 4096
MAX_KV = 1 << 20
MAX_TENSORS = 1 << 22
MAX_DIMS = 8
MAX_KEY = 1 << 16
MAX_HEADER = 1 << 30

_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}  # fmt: skip
_STRING, _ARRAY = 8, 9


class GGUFFormatError(QuantLensError):
    """Not a GGUF file, or a truncated / malformed / implausible one."""

    def __init__(self, path: str | Path, detail: str) -> None:
        super().__init__(
            f"{Path(path).name} cannot be read as a GGUF model: {detail}.",
            "Check that the download is complete (compare its size and checksum) and that the "
            "file is a llama.cpp GGUF model.",
        )
        self.detail = detail


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too long to decode (e.g. the token list): its item type and length."""

    item_type: int
    count: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: ne0 (row length) first
    type_id: int
    offset: int  # relative to the start of the data section

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class GGUFFile:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: list[TensorInfo]
    alignment: int
    data_offset: int  # where tensor data starts (the header's size, padded)
    file_size: int
    kv_bytes: int = 0  # bytes of the metadata section (tokenizer etc.)
    meta_size: int = field(default=0)  # header + metadata + tensor infos + padding


class _Cursor:
    def __init__(self, buf: bytes, path: str | Path, complete: bool, file_size: int) -> None:
        self.buf = buf
        self.complete = complete
        self.file_size = file_size
        self.pos = 0
        self.end = len(buf)
        self.path = path

    def fail(self, detail: str) -> GGUFFormatError:
        return GGUFFormatError(self.path, detail)

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise self.short(what, n)

    def short(self, what: str, n: int = 0) -> Exception:
        if not self.complete and self.pos + n <= self.file_size:
            return _NeedMore()
        return self.fail(f"the file ends inside {what} (truncated?)")

    def u32(self, what: str = "the header") -> int:
        self.need(4, what)
        v = int.from_bytes(self.buf[self.pos : self.pos + 4], "little")
        self.pos += 4
        return v

    def u64(self, what: str = "the header") -> int:
        self.need(8, what)
        v = int.from_bytes(self.buf[self.pos : self.pos + 8], "little")
        self.pos += 8
        return v

    def string(self, what: str, max_len: int | None = None) -> str:
        n = self.u64(what)
        if max_len is not None and n > max_len:
            raise self.fail(f"{what} claims {n} bytes, which is implausible")
        self.need(n, what)
        s = bytes(self.buf[self.pos : self.pos + n]).decode("utf-8", "replace")
        self.pos += n
        return s

    def skip_strings(self, count: int, what: str) -> None:
        buf, pos, end = self.buf, self.pos, self.end
        for _ in range(count):
            if pos + 8 > end:
                raise self.short(what)
            pos += 8 + int.from_bytes(buf[pos : pos + 8], "little")
            if pos > end:
                raise self.short(what)
        self.pos = pos

    def value(self, vtype: int, key: str, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            fmt, size = _SCALARS[vtype]
            self.need(size, key)
            v = struct.unpack_from(fmt, self.buf, self.pos)[0]
            self.pos += size
            return v
        if vtype == _STRING:
            return self.string(key)
        if vtype != _ARRAY or depth > 2:
            raise self.fail(f"metadata key {key!r} has unknown value type {vtype}")
        item = self.u32(key)
        count = self.u64(key)
        if item in _SCALARS:
            fmt, size = _SCALARS[item]
            self.need(count * size, key)
            if count <= SMALL_ARRAY:
                values = list(struct.unpack_from(f"<{count}{fmt[1]}", self.buf, self.pos))
                self.pos += count * size
                return values
            self.pos += count * size
            return ArrayInfo(item, count)
        if item == _STRING:
            if count * 8 > self.end - self.pos:
                raise self.short(f"metadata array {key!r} ({count} strings)", count * 8)
            if count <= 64:
                return [self.string(key) for _ in range(count)]
            self.skip_strings(count, key)
            return ArrayInfo(item, count)
        if item == _ARRAY:
            if count * 12 > self.end - self.pos:
                raise self.short(f"metadata array {key!r} ({count} arrays)", count * 12)
            for _ in range(count):
                self.value(_ARRAY, key, depth + 1)
            return ArrayInfo(item, count)
        raise self.fail(f"metadata array {key!r} has unknown item type {item}")


def read_gguf(path: str | Path) -> GGUFFile:
    """Parse one GGUF file's header. Raises :class:`GGUFFormatError` (a QuantLensError)."""
    path = Path(path)
    try:
        size = os.path.getsize(path)
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise QuantLensError(
            f"Cannot open {path}: {exc.strerror or exc}.",
            "Check the path and that you may read the file.",
        ) from exc
    with fh:
        head = fh.read(4)
        if head != GGUF_MAGIC:
            raise GGUFFormatError(path, "it does not start with 'GGUF'")
        if size < 24:
            raise GGUFFormatError(path, f"it is only {size} bytes long (truncated)")
        chunk = 16 << 20
        while True:
            fh.seek(0)
            data = fh.read(min(size, chunk))
            try:
                return _parse(path, data, size)
            except _NeedMore:
                if len(data) >= size or chunk >= MAX_HEADER:
                    raise GGUFFormatError(
                        path, "its header is truncated or implausibly large"
                    ) from None
                chunk *= 4


class _NeedMore(Exception):
    """The header goes on past the bytes read so far."""


def _parse(path: Path, buf: bytes, size: int) -> GGUFFile:
    c = _Cursor(buf, path, complete=len(buf) >= size, file_size=size)
    if bytes(buf[:4]) != GGUF_MAGIC:
        raise c.fail("it does not start with 'GGUF'")
    c.pos = 4
    version = c.u32()
    if version not in (2, 3):
        raise c.fail(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors = c.u64()
    n_kv = c.u64()
    if n_kv > MAX_KV or n_tensors > MAX_TENSORS:
        raise c.fail(f"its header claims {n_kv} metadata keys and {n_tensors} tensors")
    meta: dict[str, Any] = {}
    kv_start = c.pos
    for _ in range(n_kv):
        key = c.string("a metadata key", MAX_KEY)
        vtype = c.u32(key)
        meta[key] = c.value(vtype, key)
    kv_bytes = c.pos - kv_start
    tensors: list[TensorInfo] = []
    for _ in range(n_tensors):
        name = c.string("a tensor name", MAX_KEY)
        n_dims = c.u32(name)
        if n_dims == 0 or n_dims > MAX_DIMS:
            raise c.fail(f"tensor {name!r} claims {n_dims} dimensions")
        c.need(8 * n_dims + 12, name)
        shape = struct.unpack_from(f"<{n_dims}Q", buf, c.pos)
        c.pos += 8 * n_dims
        type_id = c.u32(name)
        offset = c.u64(name)
        if any(d == 0 or d > 1 << 40 for d in shape):
            raise c.fail(f"tensor {name!r} has an implausible shape {list(shape)}")
        tensors.append(TensorInfo(name, tuple(int(d) for d in shape), type_id, offset))
    align = meta.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise c.fail(f"general.alignment is {align!r}, not a power of two")
    data_offset = (c.pos + align - 1) // align * align
    return GGUFFile(path, version, meta, tensors, align, data_offset, size, kv_bytes, data_offset)
