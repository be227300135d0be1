"""Identify a model file by what it is, not where it lies.

A fingerprint hashes the GGUF header (metadata and tensor table, up to the tensor data offset) of
the first shard plus the total size of all shards. It never reads the weights, so it takes
milliseconds even for a 400B-parameter model, and it survives a rename or a move.
"""

from __future__ import annotations

import hashlib
import logging
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

#: the header is hashed up to the tensor data, but never more than this (a hostile file)
MAX_HEADER_BYTES = 64 * 1024 * 1024
#: what is hashed when the header cannot be parsed
FALLBACK_BYTES = 4 * 1024 * 1024

_SHARD_RE = re.compile(r"^(?P<stem>.*)-(?P<idx>\d{5})-of-(?P<n>\d{5})\.gguf$", re.IGNORECASE)
# GGUF value types -> struct format of fixed-size ones
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# llama.cpp's LLAMA_FTYPE numbers -> names, for a label when the caller gives none
_FTYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}
_TYPE_WORDS = re.compile(
    r"[-_.](?:UD-)?(?:[IT]?Q\d[_A-Z0-9]*|F16|F32|BF16|MXFP4(?:_MOE)?)$", re.IGNORECASE
)


@dataclass(frozen=True)
class ModelInfo:
    """What the store keeps about a model file."""

    path: Path
    fingerprint: str
    total_bytes: int  # all shards together
    shards: int
    name: str  # general.name, else the file name without shard and type suffixes
    file_type: str  # "Q4_K_M", "F16", ... or "" when unknown
    n_params: int  # 0 when the header could not be read
    data_bytes: int  # tensor data bytes (0 when unknown)

    @property
    def bpw(self) -> float | None:
        """Bits per weight as llama.cpp prints it: tensor data bits over parameters."""
        if self.n_params <= 0 or self.data_bytes <= 0:
            return None
        return self.data_bytes * 8 / self.n_params


def shard_paths(path: Path) -> list[Path]:
    """All shards of a split model (``x-00001-of-00003.gguf``), or just ``path``."""
    match = _SHARD_RE.match(path.name)
    if not match:
        return [path]
    n = int(match["n"])
    shards = [
        path.with_name(f"{match['stem']}-{i:05d}-of-{match['n']}.gguf") for i in range(1, n + 1)
    ]
    return [p for p in shards if p.exists()] or [path]


def display_name(path: Path) -> str:
    """A model name from a file name: shard and quant-type suffixes removed."""
    name = path.name
    match = _SHARD_RE.match(name)
    stem = match["stem"] if match else re.sub(r"\.gguf$", "", name, flags=re.IGNORECASE)
    return _TYPE_WORDS.sub("", stem) or stem


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int | float | bool:
        value = struct.unpack_from("<" + fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value  # type: ignore[no-any-return]

    def string(self) -> str:
        n = int(self.take("Q"))
        if n > len(self.data) - self.pos:
            raise ValueError("string runs past the header")
        text = self.data[self.pos : self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return text

    def skip_value(self, vtype: int) -> object:
        if vtype in _FIXED:
            return self.take(_FIXED[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = int(self.take("I")), int(self.take("Q"))
            if etype in _FIXED:
                self.pos += struct.calcsize(_FIXED[etype]) * count
            elif etype == _STRING:
                self.pos = _skip_strings(self.data, self.pos, count)
            else:
                for _ in range(count):
                    self.skip_value(etype)
            if self.pos > len(self.data):
                raise ValueError("array runs past the header")
            return None
        raise ValueError(f"unknown GGUF value type {vtype}")


def _skip_strings(data: bytes, pos: int, count: int) -> int:
    """Skip ``count`` GGUF strings fast (a 262k-token vocabulary is one such array)."""
    unpack = struct.Struct("<Q").unpack_from
    end = len(data)
    for _ in range(count):
        pos += 8 + unpack(data, pos)[0]
        if pos > end:
            raise ValueError("string array runs past the header")
    return pos


def _parse_header(data: bytes) -> tuple[int, dict[str, object], int]:
    """(tensor data offset, the scalar metadata, number of parameters) from header bytes."""
    r = _Reader(data)
    if data[:4] != b"GGUF":
        raise ValueError("not a GGUF file")
    r.pos = 4
    version = int(r.take("I"))
    if version < 2:
        raise ValueError(f"GGUF version {version} is too old")
    n_tensors, n_kv = int(r.take("Q")), int(r.take("Q"))
    meta: dict[str, object] = {}
    for _ in range(n_kv):
        key = r.string()
        value = r.skip_value(int(r.take("I")))
        if value is not None:
            meta[key] = value
    n_params = 0
    for _ in range(n_tensors):
        r.string()
        n_dims = int(r.take("I"))
        count = 1
        for _ in range(n_dims):
            count *= int(r.take("Q"))
        n_params += count
        r.take("I")
        r.take("Q")
    align = int(meta.get("general.alignment", 32) or 32)  # type: ignore[call-overload]
    offset = r.pos + (-r.pos % align)
    return offset, meta, n_params


def _read_header(path: Path) -> tuple[bytes, int, dict[str, object], int]:
    """The header bytes and what they say; grows the read until the tensor table fits."""
    size = 1 << 20
    with path.open("rb") as fh:
        while True:
            fh.seek(0)
            data = fh.read(size)
            try:
                offset, meta, n_params = _parse_header(data)
                return data[:offset], offset, meta, n_params
            except (struct.error, ValueError, IndexError) as exc:
                truncated = isinstance(exc, (struct.error, IndexError)) or "past" in str(exc)
                if not truncated or len(data) < size or size >= MAX_HEADER_BYTES:
                    raise ValueError(str(exc)) from exc
                size *= 4


@lru_cache(maxsize=256)
def _model_info_cached(path: Path, _stamp: tuple[int, int]) -> ModelInfo:
    shards = shard_paths(path)
    total = sum(p.stat().st_size for p in shards)
    h = hashlib.sha256()
    meta: dict[str, object] = {}
    n_params = data_bytes = 0
    try:
        header, offset, meta, n_params = _read_header(shards[0])
        data_bytes = total - offset * len(shards)  # other shards carry small headers too
    except (OSError, ValueError) as exc:
        log.info("fingerprint of %s from its first bytes only: %s", path, exc)
        with shards[0].open("rb") as fh:
            header = fh.read(FALLBACK_BYTES)
    h.update(header)
    h.update(struct.pack("<QI", total, len(shards)))
    ftype = meta.get("general.file_type")
    name = meta.get("general.name")
    return ModelInfo(
        path=path,
        fingerprint=h.hexdigest()[:32],
        total_bytes=total,
        shards=len(shards),
        name=str(name) if isinstance(name, str) and name.strip() else display_name(path),
        file_type=_FTYPES.get(int(ftype), "") if isinstance(ftype, int) else "",
        n_params=n_params,
        data_bytes=max(data_bytes, 0),
    )


def model_info(path: str | Path) -> ModelInfo:
    """Fingerprint and describe a model file. Raises OSError when the file cannot be read."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return _model_info_cached(p, (st.st_size, st.st_mtime_ns))


def fingerprint(path: str | Path) -> str:
    return model_info(path).fingerprint
