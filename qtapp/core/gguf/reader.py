"""A fast, defensive reader of a GGUF file's header: metadata and tensor infos, never tensor data.

The gguf package's ``GGUFReader`` decodes every token string of the vocabulary (about 8 s for
Gemma's 262k tokens); this parser skips big arrays by arithmetic on their declared sizes, so a
header of any size costs milliseconds. Every length and count is checked against the bytes the file
really has, so truncated or hostile files fail fast with :class:`GGUFFormatError`.

:func:`read_gguf` reads the whole header (metadata and tensor infos); :func:`peek_gguf` is the
cheaper listing mode (model lists, source-type labels): it stops after the metadata whenever
``general.file_type`` names the file's type.
"""

from __future__ import annotations

import functools
import math
import os
import struct
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

from qtapp.core.errors import QuantLensError
from qtapp.core.light_import import submodule

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
#: arrays up to this many items are decoded; longer ones (vocabularies) are only skipped
SMALL_ARRAY = 4096
MAX_KV = 1 << 20
MAX_TENSORS = 1 << 22
MAX_DIMS = 8
MAX_KEY = 1 << 16
MAX_HEADER = 1 << 30
#: first read of :func:`read_gguf` / :func:`peek_gguf`; grown (reading only the rest) when short
FULL_CHUNK = 16 << 20
PEEK_CHUNK = 1 << 20

_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}  # fmt: skip
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")


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
        return math.prod(self.shape)


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
    tensor_count: int = 0  # what the header declares (also when infos were skipped)


#: string arrays at least this long are stepped over with numpy first (see below)
_QUICK_SKIP_MIN = 4096


def _skip_short_strings(buf: bytes | bytearray, pos: int, end: int, count: int) -> int | None:
    """Where ``count`` strings starting at ``pos`` end, found with numpy (~15 ms for Gemma's
    262k tokens, where a walk in Python takes ~65 ms holding the GIL the window needs to
    paint); None: walk them.

    Tokens are short: the 8-byte length of a string under 256 bytes is one byte and seven
    zeros, so every such prefix is a run of seven zero bytes after its first. Those runs are
    the candidates; they are the strings exactly when the first is at ``pos`` and each one's
    length leads to the next (checked for all of them at once), which is what the walk would
    find. Anything else (a long or empty string, zeros inside a token, a header past what is
    read so far) returns None and the caller walks the strings one by one."""
    import numpy as np

    for limit in (min(end, pos + count * 24), end):  # most tokens are under 16 bytes
        region = np.frombuffer(buf, dtype=np.uint8, count=limit - pos, offset=pos)
        n = region.size - 7
        if n <= 0:
            return None
        zeros = region[1 : 1 + n] == 0
        for k in range(2, 8):
            zeros &= region[k : k + n] == 0
        starts = np.flatnonzero(zeros)[:count]
        if starts.size < count:
            continue  # more of the buffer, then give up
        if starts[0] != 0:
            return None
        after = starts + 8 + region[starts].astype(np.int64)
        if not np.array_equal(after[:-1], starts[1:]):
            return None
        last = pos + int(after[-1])
        return last if last <= end else None
    return None


class _Cursor:
    """Reads a header front to back, pulling more of the file in as it goes (never re-reading):
    a first chunk covers most headers; a vocabulary of any size costs one pass."""

    def __init__(self, fh: BinaryIO, path: Path, file_size: int, first_chunk: int) -> None:
        self.fh = fh
        self.path = path
        self.file_size = file_size
        # the bytes as read, not copied into a bytearray: a 16 MiB copy holds the GIL (12 ms,
        # and the window's GUI thread waits for it); copied only if the header needs more
        self.buf: bytes | bytearray = fh.read(min(file_size, first_chunk))
        self.pos = 0
        self.end = len(self.buf)

    def fail(self, detail: str) -> GGUFFormatError:
        return GGUFFormatError(self.path, detail)

    def need(self, n: int, what: str) -> None:
        if n < 0:
            raise self.fail(f"{what} has a negative size")
        if self.pos + n > self.end:
            self.grow(self.pos + n, what)

    def grow(self, upto: int, what: str) -> None:
        """Hold at least ``upto`` bytes; a header past the file's end or MAX_HEADER fails."""
        if upto > self.file_size:
            raise self.fail(f"the file ends inside {what} (truncated?)")
        if upto > MAX_HEADER:
            raise self.fail(f"its header is implausibly large (over {MAX_HEADER >> 20} MiB)")
        want = max(upto, min(self.file_size, MAX_HEADER, 4 * self.end))
        more = self.fh.read(want - self.end)
        if self.end + len(more) < upto:  # the file shrank while we read it
            raise self.fail(f"the file ends inside {what} (truncated?)")
        if not isinstance(self.buf, bytearray):
            self.buf = bytearray(self.buf)
        self.buf += more  # in place: a bytearray grows without copying what it holds
        self.end = len(self.buf)

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
        """Step over ``count`` length-prefixed strings (a vocabulary: 262k for Gemma 3)."""
        if count >= _QUICK_SKIP_MIN:
            after = _skip_short_strings(self.buf, self.pos, self.end, count)
            if after is not None:
                self.pos = after
                return
        buf, pos, end, length = self.buf, self.pos, self.end, _U64.unpack_from
        for _ in range(count):
            if pos + 8 > end:
                self.grow(pos + 8, what)
                buf, end = self.buf, self.end  # the first growth replaces the bytes read first
            pos += 8 + length(buf, pos)[0]
            if pos > end:
                self.grow(pos, what)
                buf, end = self.buf, self.end
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
            self.need(count * 8, f"metadata array {key!r} ({count} strings)")
            if count <= 64:
                return [self.string(key) for _ in range(count)]
            self.skip_strings(count, key)
            return ArrayInfo(item, count)
        if item == _ARRAY:
            self.need(count * 12, f"metadata array {key!r} ({count} arrays)")
            for _ in range(count):
                self.value(_ARRAY, key, depth + 1)
            return ArrayInfo(item, count)
        raise self.fail(f"metadata array {key!r} has unknown item type {item}")


@dataclass(frozen=True)
class GGUFPeek:
    """What a model list shows, from :func:`peek_gguf`."""

    path: Path
    version: int
    architecture: str | None
    name: str | None
    file_type: str | None  # "Q4_K_M", "F16", ... (general.file_type, else the dominant tensor type)
    tensor_count: int
    split_count: int


def read_gguf(path: str | Path) -> GGUFFile:
    """Parse one GGUF file's header. Raises :class:`GGUFFormatError` (a QuantLensError).

    The result is shared (treat it as read-only): opening a model reads its header from several
    places at once (the Fit page, the store's fingerprint, the Quantize page), and a big
    vocabulary takes tens of ms of Python to walk; a changed file (size, mtime) is read again.
    """
    p = Path(path)
    return _cached("full", p, lambda: _read(p, FULL_CHUNK, lambda c: _parse(c)))


def peek_gguf(path: str | Path) -> GGUFPeek:
    """Architecture, name and type for a model list; raises like :func:`read_gguf`.

    The tensor infos are read only when ``general.file_type`` is missing (to name the type by
    the tensors' dominant one), so this costs one small read for most files; a header
    :func:`read_gguf` already holds is not read again.
    """
    p = Path(path)

    def parse(c: _Cursor) -> GGUFPeek:
        return _peek_of(_parse(c, tensors_if=lambda meta: "general.file_type" not in meta))

    return _cached("peek", p, lambda: _read(p, PEEK_CHUNK, parse))


def _peek_of(f: GGUFFile) -> GGUFPeek:
    meta = f.metadata
    keys = ("general.architecture", "general.name", "split.count")
    arch, name, split = (meta.get(k) for k in keys)
    return GGUFPeek(
        path=f.path,
        version=f.version,
        architecture=arch if isinstance(arch, str) else None,
        name=name if isinstance(name, str) else None,
        file_type=file_type_label(meta, f.tensors),
        tensor_count=f.tensor_count,
        split_count=split if isinstance(split, int) and split > 0 else 1,
    )


#: parsed headers by (kind, path, size, mtime, inode), most recently used last
_HEADERS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_HEADERS_MAX = 64
#: one parse at a time: threads asking for the same header wait for the first one's answer
#: instead of walking the vocabulary again beside it (three parallel walks of Gemma's 262k
#: tokens held the GIL for ~300 ms while the window needed it to paint)
_HEADERS_LOCK = threading.Lock()


def _cached(kind: str, path: Path, parse: Callable[[], _T]) -> _T:
    try:
        st = path.stat()
    except OSError:
        return parse()  # _read says what is wrong
    stamp = (path, st.st_size, st.st_mtime_ns, st.st_ino)
    own, full = (kind, *stamp), ("full", *stamp)
    with _HEADERS_LOCK:
        if own in _HEADERS:
            _HEADERS.move_to_end(own)
            return cast(_T, _HEADERS[own])
        if kind == "peek" and full in _HEADERS:  # the whole header is already here
            return cast(_T, _peek_of(_HEADERS[full]))
        value = parse()
        _HEADERS[own] = value
        while len(_HEADERS) > _HEADERS_MAX:
            _HEADERS.popitem(last=False)
        return value


def is_gguf(path: str | Path) -> bool:
    """True when the file starts with the GGUF magic (for Ollama blobs without an extension)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


# -- type names ----------------------------------------------------------------------------------
def file_type_name(value: int) -> str:
    """``15`` -> ``"Q4_K_M"``: llama.cpp's ``llama_ftype`` numbering (``"type 99"`` if unknown)."""
    LlamaFileType = submodule("gguf", "constants").LlamaFileType  # noqa: N806 - a class

    try:
        name = str(LlamaFileType(value).name)
    except ValueError:
        return f"type {value}"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def ggml_type_name(type_id: int) -> str:
    """``12`` -> ``"Q4_K"``; ``"TYPE<n>"`` for a type newer than the gguf package."""
    names = _ggml_type_names()
    return names.get(type_id) or f"TYPE{type_id}"


@functools.cache
def _ggml_type_names() -> dict[int, str]:
    types = submodule("gguf", "constants").GGMLQuantizationType  # no numpy: light_import
    return {int(t.value): t.name for t in types}


def file_type_label(meta: dict[str, Any], tensors: Iterable[TensorInfo]) -> str | None:
    """``general.file_type`` by name, else the matrices' most common type by element count."""
    ftype = meta.get("general.file_type")
    if isinstance(ftype, int):
        return file_type_name(ftype)
    weights: Counter[int] = Counter()
    for t in tensors:
        if len(t.shape) >= 2:
            weights[t.type_id] += t.n_elements
    return ggml_type_name(weights.most_common(1)[0][0]) if weights else None


# -- parsing -------------------------------------------------------------------------------------
_T = TypeVar("_T")


def _read(path: Path, first_chunk: int, parse: Callable[[_Cursor], _T]) -> _T:
    """Open ``path``, check the magic, and parse its header with a cursor over the file.

    I/O errors (a missing file, no permission, a failing disk) become a QuantLensError too.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            c = _Cursor(fh, path, size, first_chunk)
            if c.buf[:4] != GGUF_MAGIC:
                raise GGUFFormatError(path, "it is not a GGUF file (it does not start with 'GGUF')")
            if size < 24:
                raise GGUFFormatError(path, f"it is only {size} bytes long (truncated)")
            c.pos = 4
            return parse(c)
    except OSError as exc:
        raise QuantLensError(
            f"Cannot read {path}: {exc.strerror or exc}.",
            "Check the path and that you may read the file.",
        ) from exc


def _parse(c: _Cursor, tensors_if: Callable[[dict[str, Any]], bool] | None = None) -> GGUFFile:
    """The header under ``c``; the tensor infos only where ``tensors_if(metadata)`` says so.

    Without them, ``tensors`` is empty and ``data_offset`` / ``meta_size`` are 0 (unknown).
    """
    path, size = c.path, c.file_size
    version = c.u32()
    if version not in (2, 3):
        raise c.fail(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors = c.u64()
    n_kv = c.u64()
    if n_kv > MAX_KV or n_tensors > MAX_TENSORS:
        raise c.fail(
            f"its header claims {n_kv} metadata keys and {n_tensors} tensors, which is implausible"
        )
    meta: dict[str, Any] = {}
    kv_start = c.pos
    for _ in range(n_kv):
        key = c.string("a metadata key", MAX_KEY)
        vtype = c.u32(key)
        meta[key] = c.value(vtype, key)
    kv_bytes = c.pos - kv_start
    tensors: list[TensorInfo] = []
    if tensors_if is not None and not tensors_if(meta):
        return GGUFFile(path, version, meta, [], DEFAULT_ALIGNMENT, 0, size, kv_bytes, 0, n_tensors)
    for _ in range(n_tensors):
        name = c.string("a tensor name", MAX_KEY)
        n_dims = c.u32(name)
        if n_dims == 0 or n_dims > MAX_DIMS:
            raise c.fail(f"tensor {name!r} claims {n_dims} dimensions")
        c.need(8 * n_dims + 12, name)
        shape = struct.unpack_from(f"<{n_dims}Q", c.buf, c.pos)
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
    return GGUFFile(
        path, version, meta, tensors, align, data_offset, size, kv_bytes, data_offset, n_tensors
    )
