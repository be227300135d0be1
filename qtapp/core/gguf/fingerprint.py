"""Identify a model file by what it is, not where it lies.

A fingerprint hashes the GGUF header (metadata and tensor table, up to the tensor data offset that
:mod:`qtapp.core.gguf.reader` finds) of the first shard plus the total size of all shards. It never
reads the weights, so it takes milliseconds even for a 400B-parameter model, and it survives a
rename or a move.
"""

from __future__ import annotations

import hashlib
import logging
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qtapp.core.errors import QuantLensError
from qtapp.core.gguf.reader import GGUFFile, file_type_name, read_gguf
from qtapp.core.gguf.shards import SPLIT_RE, split_parts

log = logging.getLogger(__name__)

#: the header is hashed up to the tensor data, but never more than this (a hostile file)
MAX_HEADER_BYTES = 64 * 1024 * 1024
#: what is hashed when the header cannot be parsed
FALLBACK_BYTES = 4 * 1024 * 1024

_TYPE_WORDS = re.compile(
    r"[-_.](?:UD-)?(?:[IT]?Q\d[_A-Z0-9]*|F16|F32|BF16|MXFP4(?:_MOE)?)$", re.IGNORECASE
)


@dataclass(frozen=True)
class FileIdentity:
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
    """All shards of a split model (``x-00001-of-00003.gguf``) that exist, or just ``path``."""
    return [p for p in split_parts(path) if p.exists()] or [path]


def display_name(path: Path) -> str:
    """A model name from a file name: shard and quant-type suffixes removed."""
    name = path.name
    match = SPLIT_RE.match(name)
    stem = match["stem"] if match else re.sub(r"\.gguf$", "", name, flags=re.IGNORECASE)
    return _TYPE_WORDS.sub("", stem) or stem


def _read_header(path: Path) -> tuple[bytes, GGUFFile]:
    """The header's bytes (up to the tensor data) and what they say."""
    gguf = read_gguf(path)
    if gguf.data_offset > MAX_HEADER_BYTES:
        raise ValueError(f"its header of {gguf.data_offset:,} bytes is implausibly large")
    with path.open("rb") as fh:
        return fh.read(gguf.data_offset), gguf


@lru_cache(maxsize=256)
def _model_info_cached(path: Path, _stamp: tuple[int, int]) -> FileIdentity:
    shards = shard_paths(path)
    total = sum(p.stat().st_size for p in shards)
    h = hashlib.sha256()
    meta: dict[str, object] = {}
    n_params = data_bytes = 0
    try:
        header, gguf = _read_header(shards[0])
        meta, n_params = gguf.metadata, sum(t.n_elements for t in gguf.tensors)
        data_bytes = total - gguf.data_offset * len(shards)  # other shards carry small headers too
    except (OSError, ValueError, QuantLensError) as exc:
        log.info("fingerprint of %s from its first bytes only: %s", path, exc)
        with shards[0].open("rb") as fh:
            header = fh.read(FALLBACK_BYTES)
    h.update(header)
    h.update(struct.pack("<QI", total, len(shards)))
    ftype = meta.get("general.file_type")
    name = meta.get("general.name")
    return FileIdentity(
        path=path,
        fingerprint=h.hexdigest()[:32],
        total_bytes=total,
        shards=len(shards),
        name=str(name) if isinstance(name, str) and name.strip() else display_name(path),
        file_type=file_type_name(ftype) if isinstance(ftype, int) else "",
        n_params=n_params,
        data_bytes=max(data_bytes, 0),
    )


def model_info(path: str | Path) -> FileIdentity:
    """Fingerprint and describe a model file. Raises OSError when the file cannot be read."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return _model_info_cached(p, (st.st_size, st.st_mtime_ns))


def fingerprint(path: str | Path) -> str:
    return model_info(path).fingerprint
