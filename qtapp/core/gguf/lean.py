"""A lean copy of a GGUF header for llama.cpp's dry runs: the vocabulary arrays left out.

llama.cpp's quantizer dry run decides each tensor's type from the architecture, the hyper-
parameters and the tensor infos; it never uses the tokenizer. Yet every call parses and copies
the whole metadata: for a 248k-token vocabulary that is about 0.2 s of a 0.23 s dry run, paid
once per quant type. The lean copy keeps every other key byte for byte, adds
``{arch}.vocab_size`` (llama.cpp reads the vocabulary size from it first), keeps the tensor
infos verbatim and stands for the data with a sparse extent of the same size, so the tensors'
offsets and the file's layout are unchanged. Split models get one lean copy per shard, under
the same names, so llama.cpp finds the shards as it would.

``tests/core/test_lean_header.py`` checks that every target sizes the same on both.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from qtapp.core.errors import QuantLensError
from qtapp.core.gguf.reader import (
    _STRING,
    DEFAULT_ALIGNMENT,
    FULL_CHUNK,
    GGUF_MAGIC,
    ArrayInfo,
    _Cursor,
    _read,
)
from qtapp.core.gguf.shards import split_parts

__all__ = ["lean_copy"]

_UINT32 = 4


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _lean_header(c: _Cursor, no_vocab: bool = False) -> tuple[bytes, int, int]:
    """(the lean header, padded to the alignment; the old data offset; the alignment)."""
    version = c.u32()
    n_tensors = c.u64()
    n_kv = c.u64()
    kept: list[bytes] = []
    meta: dict[str, object] = {}
    dropped_tokens = 0
    model_kv = -1
    for _ in range(n_kv):
        start = c.pos
        key = c.string("a metadata key")
        value = c.value(c.u32(key), key)
        meta[key] = value
        if key.startswith("tokenizer.") and isinstance(value, ArrayInfo):
            if key == "tokenizer.ggml.tokens":
                dropped_tokens = value.count
            continue
        if key == "tokenizer.ggml.model":
            model_kv = len(kept)
        kept.append(bytes(c.buf[start : c.pos]))
    arch = meta.get("general.architecture")
    size_key = f"{arch}.vocab_size"
    if dropped_tokens and isinstance(arch, str) and size_key not in meta:
        kept.append(_string(size_key) + struct.pack("<II", _UINT32, dropped_tokens))
    elif no_vocab and dropped_tokens and meta.get(size_key) != dropped_tokens:
        raise QuantLensError(  # llama.cpp would count the tokens, the lean copy the key
            f"{size_key} ({meta.get(size_key)}) differs from the {dropped_tokens} tokens.",
            "The model's header is inconsistent; it is sized from the file itself.",
        )
    if no_vocab and dropped_tokens and model_kv >= 0:
        tokenizer = _string("tokenizer.ggml.model") + struct.pack("<I", _STRING)
        kept[model_kv] = tokenizer + _string("none")
    infos_start = c.pos
    for _ in range(n_tensors):
        name = c.string("a tensor name")
        n_dims = c.u32(name)
        c.need(8 * n_dims + 12, name)
        c.pos += 8 * n_dims + 12
    infos = bytes(c.buf[infos_start : c.pos])
    align = meta.get("general.alignment", DEFAULT_ALIGNMENT)
    assert isinstance(align, int) and align > 0
    old_offset = (c.pos + align - 1) // align * align
    head = GGUF_MAGIC + struct.pack("<IQQ", version, n_tensors, len(kept)) + b"".join(kept)
    head += infos
    head += b"\0" * (-len(head) % align)
    return head, old_offset, align


def _lean_one(src: Path, dst: Path, no_vocab: bool) -> None:
    head, old_offset, _ = _read(src, FULL_CHUNK, lambda c: _lean_header(c, no_vocab))
    data = os.path.getsize(src) - old_offset
    with open(dst, "wb") as fh:
        fh.write(head)
        fh.truncate(len(head) + max(data, 0))  # sparse: the dry run reads no tensor data


def lean_copy(model: str | Path, folder: str | Path, no_vocab: bool = False) -> Path:
    """Lean copies of ``model`` (every shard) in ``folder``; returns the first one's path.

    ``no_vocab`` also names the tokenizer ``none``, for the no-alloc load: llama.cpp then makes
    ``{arch}.vocab_size`` dummy tokens instead of building its token maps (0.3 s of the 397B
    seed's 0.7 s load); the vocabulary's size, all that the buffers depend on, stays the same.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = split_parts(Path(model))
    for part in parts:
        _lean_one(part, folder / part.name, no_vocab)
    return folder / parts[0].name
