"""Tensor infos (name, shape, type) and layer count of a GGUF model, without reading tensor data.

A small parser of its own: the gguf package's reader decodes every vocabulary entry into numpy
views, which takes over 10 s for a 262k-token vocabulary; this skips them (about 0.2 s).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from qtapp.core.errors import QuantLensError

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
           10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order, ne0 first
    type_id: int

    @property
    def type_name(self) -> str:
        from gguf import GGMLQuantizationType

        return GGMLQuantizationType(self.type_id).name

    @property
    def n_bytes(self) -> int:
        from qtapp.core.quants import tensor_bytes

        return tensor_bytes(self.type_name, self.shape)


@dataclass(frozen=True)
class TensorList:
    names: list[str]
    n_layer: int
    tensors: tuple[TensorInfo, ...] = ()
    metadata: dict[str, object] | None = None


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str) -> object:
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = int(self.take("<Q"))  # type: ignore[arg-type]
        if n > len(self.buf) - self.pos:
            raise ValueError("a string runs past the end of the file")
        text = bytes(self.buf[self.pos : self.pos + n]).decode("utf-8", "replace")
        self.pos += n
        return text

    def value(self, vtype: int, keep: bool) -> object:
        if vtype in _SCALAR:
            return self.take(_SCALAR[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype = int(self.take("<I"))  # type: ignore[arg-type]
            count = int(self.take("<Q"))  # type: ignore[arg-type]
            if etype in _SCALAR:
                self.pos += count * struct.calcsize(_SCALAR[etype])
                return None
            if etype == _STRING:
                for _ in range(count):
                    n = int(self.take("<Q"))  # type: ignore[arg-type]
                    self.pos += n
                return None
            items = [self.value(etype, keep) for _ in range(count)]
            return items if keep else None
        raise ValueError(f"unknown GGUF value type {vtype}")


def read_tensor_infos(path: str | Path) -> TensorList:
    """Parse the header and tensor infos; :class:`QuantLensError` on a bad or truncated file."""
    path = Path(path)
    try:
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            cur = _Cursor(buf)
            if bytes(buf[:4]) != b"GGUF":
                raise ValueError("not a GGUF file")
            cur.pos = 4
            cur.take("<I")
            n_tensors = int(cur.take("<Q"))  # type: ignore[arg-type]
            n_kv = int(cur.take("<Q"))  # type: ignore[arg-type]
            meta: dict[str, object] = {}
            for _ in range(n_kv):
                key = cur.string()
                vtype = int(cur.take("<I"))  # type: ignore[arg-type]
                value = cur.value(vtype, keep=False)
                if value is not None:
                    meta[key] = value
            tensors = []
            for _ in range(n_tensors):
                name = cur.string()
                n_dims = int(cur.take("<I"))  # type: ignore[arg-type]
                shape = tuple(int(cur.take("<Q")) for _ in range(n_dims))  # type: ignore[arg-type]
                type_id = int(cur.take("<I"))  # type: ignore[arg-type]
                cur.take("<Q")
                tensors.append(TensorInfo(name, shape, type_id))
    except (OSError, ValueError, struct.error) as exc:
        raise QuantLensError(
            f"Cannot read {path.name}: the file is truncated or damaged ({exc}).",
            "Pick a complete GGUF model; download or convert it again.",
        ) from exc
    names = [t.name for t in tensors]
    arch = meta.get("general.architecture")
    n_layer = int(meta.get(f"{arch}.block_count", 0) or 0)  # type: ignore[call-overload]
    if not n_layer:
        blocks = {
            int(n.split(".")[1])
            for n in names
            if n.startswith("blk.") and n.split(".")[1].isdigit()
        }
        n_layer = max(blocks) + 1 if blocks else 0
    return TensorList(names, n_layer, tuple(tensors), meta)


def read_tensor_names(path: str | Path) -> TensorList:
    return read_tensor_infos(path)
