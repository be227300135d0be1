"""What a GGUF model is, read from its header alone: shapes, experts, attention layout, tensors.

Everything comes from :mod:`qtapp.core.gguf.reader` (milliseconds even for a 400B-parameter file);
the per-architecture rules (sliding-window pattern, recurrent layers) follow llama.cpp's
``src/models/<arch>.cpp`` ``load_arch_hparams`` of the vendored version.
"""

from __future__ import annotations

import collections
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.fit.quants import tensor_bytes
from qtapp.core.gguf.fingerprint import fingerprint
from qtapp.core.gguf.reader import ArrayInfo, GGUFFile, file_type_label, ggml_type_name, read_gguf
from qtapp.core.gguf.shards import split_parts

#: arch -> (default sliding-window pattern, dense_first), from each model's load_swa_pattern call
SWA_PATTERNS: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False), "gemma3": (6, False), "gemma-embedding": (6, False),
    "gemma3n": (5, False), "cohere2": (4, False), "llama4": (4, False), "olmo2": (4, False),
    "gpt-oss": (2, False), "exaone4": (4, False), "afmoe": (4, False), "smallthinker": (4, True),
    "plamo3": (8, False), "exaone-moe": (4, False),
}  # fmt: skip
#: hybrid archs whose recurrent layers follow "full attention every N layers" (default N)
RECURRENT_INTERVAL = {"qwen35moe": 4, "qwen35": 4, "qwen3next": 4}
#: hybrid archs where a layer without KV heads is a recurrent (or short-conv) layer
RECURRENT_BY_KV_HEADS = {
    "lfm2",
    "lfm2moe",
    "granitehybrid",
    "jamba",
    "nemotron_h",
    "nemotron_h_moe",
}
#: pure recurrent archs
RECURRENT_ALL = {"mamba", "mamba2", "rwkv6", "rwkv7", "rwkv6qwen2", "arwkv7"}

_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    type: str  # ggml type name: "Q4_K", "F16", ...
    bytes: int
    layer: int | None  # block index, None for token_embd / output / norms

    @property
    def is_expert(self) -> bool:
        return "_exps." in self.name

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


@dataclass
class ModelInfo:
    path: Path
    shards: list[Path]
    architecture: str
    name: str
    file_type: str
    metadata: dict[str, Any] = field(repr=False)
    tensors: list[Tensor] = field(repr=False)
    size_on_disk: int  # sum of the shards' sizes (what the files claim)
    allocated_on_disk: int  # blocks really used (sparse test files are tiny here)
    meta_bytes: int  # header + metadata + tensor infos, all shards (not counted by the dry run)
    fingerprint: str
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    # -- metadata helpers -----------------------------------------------------------------------
    def key(self, name: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{name}", default)

    def _int(self, name: str, default: int = 0) -> int:
        v = self.key(name, default)
        if isinstance(v, list):
            return int(max(v)) if v else default
        return int(v) if isinstance(v, (int, float)) else default

    def _per_layer(self, name: str, default: int) -> list[int]:
        v = self.key(name, default)
        if isinstance(v, list) and len(v) >= self.n_layer:
            return [int(x) for x in v[: self.n_layer]]
        if isinstance(v, list) and v:
            return [int(v[0])] * self.n_layer
        return [int(v) if isinstance(v, (int, float)) else default] * self.n_layer

    # -- shape ----------------------------------------------------------------------------------
    @cached_property
    def n_layer(self) -> int:
        """Blocks the main pass runs (MTP / NextN layers excluded, as llama.cpp skips them)."""
        return max(self._int("block_count") - self._int("nextn_predict_layers"), 0)

    @property
    def n_embd(self) -> int:
        return self._int("embedding_length")

    @property
    def n_ff(self) -> int:
        return self._int("feed_forward_length")

    @property
    def n_ctx_train(self) -> int:
        return self._int("context_length")

    @cached_property
    def n_head(self) -> list[int]:
        return self._per_layer("attention.head_count", 0)

    @cached_property
    def n_head_kv(self) -> list[int]:
        heads = self.n_head
        v = self.key("attention.head_count_kv")
        if v is None:
            return list(heads)
        return self._per_layer("attention.head_count_kv", heads[0] if heads else 0)

    @property
    def head_dim_k(self) -> int:
        h = max(self.n_head or [0])
        return self._int("attention.key_length", self.n_embd // h if h else 0)

    @property
    def head_dim_v(self) -> int:
        h = max(self.n_head or [0])
        return self._int("attention.value_length", self.n_embd // h if h else 0)

    @property
    def tied_embeddings(self) -> bool:
        """No ``output.weight``: llama.cpp's output layer reuses ``token_embd``."""
        tied = self.memo.get("tied")
        if tied is None:
            tied = self.memo["tied"] = not any(t.name == "output.weight" for t in self.tensors)
        return bool(tied)

    @property
    def n_vocab(self) -> int:
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, ArrayInfo):
            return tokens.count
        if isinstance(tokens, list):
            return len(tokens)
        return self._int("vocab_size")

    @property
    def n_expert(self) -> int:
        return self._int("expert_count")

    @property
    def n_expert_used(self) -> int:
        return self._int("expert_used_count")

    @property
    def n_expert_shared(self) -> int:
        n = self._int("expert_shared_count")
        if n == 0 and any("_shexp." in t.name for t in self.tensors):
            return 1
        return n

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 1

    # -- attention layout -----------------------------------------------------------------------
    @property
    def n_swa(self) -> int:
        return self._int("attention.sliding_window")

    @cached_property
    def swa_layers(self) -> list[bool]:
        """Which layers use the sliding-window cache (llama.cpp's ``hparams.is_swa``)."""
        n = self.n_layer
        if self.n_swa <= 0:
            return [False] * n
        pattern = self.key("attention.sliding_window_pattern")
        if isinstance(pattern, list) and len(pattern) >= n:
            return [bool(x) for x in pattern[:n]]
        default, dense_first = SWA_PATTERNS.get(self.architecture, (0, False))
        if isinstance(pattern, int):
            default = pattern
        if default == 0 and self.architecture not in SWA_PATTERNS:
            return [False] * n  # an arch we do not know to use SWA: plan the full cache
        if dense_first:
            return [default == 0 or il % default != 0 for il in range(n)]
        return [default == 0 or il % default < default - 1 for il in range(n)]

    @cached_property
    def recurrent_layers(self) -> list[bool]:
        n, arch = self.n_layer, self.architecture
        if arch in RECURRENT_ALL:
            return [True] * n
        explicit = self.key("attention.recurrent_layers")
        if isinstance(explicit, list) and len(explicit) >= n:
            return [bool(x) for x in explicit[:n]]
        if arch in RECURRENT_INTERVAL:
            every = self._int("full_attention_interval", RECURRENT_INTERVAL[arch]) or 1
            return [(il + 1) % every != 0 for il in range(n)]
        if arch in RECURRENT_BY_KV_HEADS:
            return [h == 0 for h in self.n_head_kv]
        return [False] * n

    @property
    def ssm(self) -> dict[str, int]:
        return {
            k: self._int(f"ssm.{k}")
            for k in ("conv_kernel", "inner_size", "state_size", "time_step_rank", "group_count")
        }

    @property
    def is_hybrid(self) -> bool:
        return any(self.recurrent_layers) and not all(self.recurrent_layers)

    # -- parameters and sizes -------------------------------------------------------------------
    @cached_property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @cached_property
    def n_params_active(self) -> int:
        """Parameters one token touches: routed experts count n_used / n_expert of theirs."""
        if not self.is_moe or not self.n_expert_used:
            return self.n_params
        expert = sum(t.n_elements for t in self.tensors if t.is_expert)
        return self.n_params - expert + expert * self.n_expert_used // self.n_expert

    @cached_property
    def weights_bytes(self) -> int:
        return sum(t.bytes for t in self.tensors)

    @cached_property
    def type_histogram(self) -> dict[str, tuple[int, int]]:
        """ggml type -> (tensor count, bytes), largest first."""
        hist: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
        for t in self.tensors:
            hist[t.type][0] += 1
            hist[t.type][1] += t.bytes
        return {k: (v[0], v[1]) for k, v in sorted(hist.items(), key=lambda kv: -kv[1][1])}

    @property
    def bpw(self) -> float:
        return 8.0 * self.weights_bytes / max(self.n_params, 1)

    def layer_bytes(self) -> list[int]:
        out = [0] * self.n_layer
        for t in self.tensors:
            if t.layer is not None and t.layer < self.n_layer:
                out[t.layer] += t.bytes
        return out

    def summary(self) -> dict[str, Any]:
        """A JSON-able card of the model (the CLI's ``model`` object)."""
        return {
            "path": str(self.path),
            "shards": len(self.shards),
            "architecture": self.architecture,
            "name": self.name,
            "file_type": self.file_type,
            "n_params": self.n_params,
            "n_params_active": self.n_params_active,
            "n_layer": self.n_layer,
            "n_embd": self.n_embd,
            "n_head": max(self.n_head or [0]),
            "n_head_kv": max(self.n_head_kv or [0]),
            "head_dim_k": self.head_dim_k,
            "head_dim_v": self.head_dim_v,
            "n_expert": self.n_expert,
            "n_expert_used": self.n_expert_used,
            "n_expert_shared": self.n_expert_shared,
            "n_swa": self.n_swa,
            "swa_layers": sum(self.swa_layers),
            "recurrent_layers": sum(self.recurrent_layers),
            "n_ctx_train": self.n_ctx_train,
            "n_vocab": self.n_vocab,
            "size_on_disk": self.size_on_disk,
            "weights_bytes": self.weights_bytes,
            "meta_bytes": self.meta_bytes,
            "bpw": round(self.bpw, 3),
            "fingerprint": self.fingerprint,
            "tensor_types": {
                k: {"count": c, "bytes": b} for k, (c, b) in self.type_histogram.items()
            },
        }


def shard_paths(path: Path) -> list[Path]:
    """All shards of a split model given any one of them (or just ``[path]``)."""
    if path.is_dir():
        raise QuantLensError(
            f"{path} is a folder, not a model file.", "Give the path of a .gguf file."
        )
    shards = split_parts(path)
    if shards == [path] and not path.exists():
        raise QuantLensError(f"{path} does not exist.", "Check the path of the .gguf file.")
    missing = [s.name for s in shards if not s.exists()]
    if missing:
        raise QuantLensError(
            f"{path.name} is one part of a split model, but {', '.join(missing[:3])} "
            f"{'is' if len(missing) == 1 else 'are'} missing.",
            "Put all parts of the model in the same folder.",
        )
    return shards


def _type_name(type_id: int, tensor: str, path: Path) -> str:
    if type_id > 255:
        raise QuantLensError(
            f"{path.name}: tensor {tensor} has ggml type {type_id}, which is not a type.",
            "The file is corrupt; download it again.",
        )
    return ggml_type_name(type_id)  # "TYPE<n>" when newer than the gguf package: sized by offsets


def _add_tensors(f: GGUFFile, tensors: list[Tensor]) -> None:
    """Append one shard's tensors to ``tensors``.

    Raises :class:`QuantLensError` when the shard is shorter than its tensors need.
    """
    ends = sorted({ti.offset for ti in f.tensors} | {f.file_size - f.data_offset})
    for ti in f.tensors:
        tname = _type_name(ti.type_id, ti.name, f.path)
        try:
            nbytes = tensor_bytes(tname, ti.shape)
        except (KeyError, ZeroDivisionError):
            # a type the gguf package does not know: the gap to the next tensor (padded)
            nbytes = ends[ends.index(ti.offset) + 1] - ti.offset
        m = _LAYER.match(ti.name)
        tensors.append(Tensor(ti.name, ti.shape, tname, nbytes, int(m[1]) if m else None))
    end = max(
        (
            f.data_offset + ti.offset + t.bytes
            for ti, t in zip(f.tensors, tensors[-len(f.tensors) :], strict=True)
        ),
        default=0,
    )
    if f.tensors and end > f.file_size:
        raise QuantLensError(
            f"{f.path.name} is truncated: its tensors need {end:,} bytes, the file has "
            f"{f.file_size:,}.",
            "The download is incomplete; download the file again.",
        )


def read_model(path: str | Path) -> ModelInfo:
    """Read a model's header (all shards). Raises :class:`QuantLensError` with a clear message."""
    path = Path(path)
    shards = shard_paths(path)
    files: list[GGUFFile] = [read_gguf(s) for s in shards]
    first = files[0]
    meta = dict(first.metadata)
    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise QuantLensError(
            f"{path.name} has no general.architecture key.",
            "It may be a LoRA adapter or vocabulary file rather than a model.",
        )
    tensors: list[Tensor] = []
    for f in files:
        _add_tensors(f, tensors)
    allocated = 0
    for s in shards:
        st = s.stat()
        allocated += getattr(st, "st_blocks", 0) * 512 or st.st_size
    name = meta.get("general.name")
    return ModelInfo(
        path=path,
        shards=shards,
        architecture=arch,
        name=name if isinstance(name, str) and name else path.stem,
        file_type=file_type_label(meta, (ti for f in files for ti in f.tensors)) or "unknown",
        metadata=meta,
        tensors=tensors,
        size_on_disk=sum(f.file_size for f in files),
        allocated_on_disk=allocated,
        meta_bytes=sum(f.data_offset for f in files),
        fingerprint=fingerprint(path),  # THE fingerprint: the results store's, the caches' too
    )
