"""Tensor names, types and the layer count of a GGUF model, for recipes and the quantizer.

A thin view over :mod:`qtapp.core.gguf.reader` (the one fast header parser): it never reads tensor
data and fails with a clear :class:`~qtapp.core.errors.QuantLensError` on a damaged file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtapp.core.fit.quants import tensor_bytes
from qtapp.core.gguf.reader import ggml_type_name, read_gguf


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order, ne0 first
    type_id: int

    @property
    def type_name(self) -> str:
        return ggml_type_name(self.type_id)

    @property
    def n_bytes(self) -> int:
        return tensor_bytes(self.type_name, self.shape)


@dataclass(frozen=True)
class TensorList:
    names: list[str]
    n_layer: int
    tensors: tuple[TensorInfo, ...] = ()
    metadata: dict[str, Any] | None = None  # the reader's scalar values, as read


def read_tensor_infos(path: str | Path) -> TensorList:
    """Names, shapes and types of every tensor, the layer count and the scalar metadata."""
    gguf = read_gguf(path)
    tensors = tuple(TensorInfo(t.name, tuple(t.shape), t.type_id) for t in gguf.tensors)
    names = [t.name for t in tensors]
    arch = gguf.metadata.get("general.architecture")
    n_layer = int(gguf.metadata.get(f"{arch}.block_count", 0) or 0)
    if not n_layer:
        blocks = {
            int(n.split(".")[1])
            for n in names
            if n.startswith("blk.") and n.split(".")[1].isdigit()
        }
        n_layer = max(blocks) + 1 if blocks else 0
    return TensorList(names, n_layer, tensors, dict(gguf.metadata))


read_tensor_names = read_tensor_infos
