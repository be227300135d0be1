"""Host RAM as llama.cpp uses it: repacked weight copies, mapped file pages, load modes.

On the CPU, llama.cpp does not only map the file. Its CPU backend copies some weights into an
*extra buffer type* whose layout its kernels run faster on: ``CPU_REPACK`` (AVX2, AVX512, ARM
NEON builds) and ``AMX`` (builds for Intel CPUs with AMX). Which weights, and how many bytes the
copy takes, are decided per tensor by the rules of the pinned ggml (read from
``ggml/src/ggml-cpu/repack.cpp`` ``ggml_repack_get_optimal_repack_type`` and
``ggml-cpu/amx/amx.cpp`` ``supports_op`` / ``mmq.cpp`` ``ggml_backend_amx_get_alloc_size``):

- only weights of a matrix multiplication (not ``token_embd``, which is read row by row), held on
  the CPU, of a type the CPU's kernels have a layout for, with a row count they divide;
- AMX (first in llama.cpp's list) takes 2-D ``Q4_0 Q4_1 Q8_0 Q4_K Q5_K Q6_K IQ4_XS F16``
  matrices with 32-divisible rows and 32- (or 256-) divisible columns, and packs them with extra
  per-block scales;
- CPU_REPACK takes ``Q4_0 Q4_K IQ4_NL MXFP4`` (AVX2), ``Q2_K`` (AVX512), and on ARM also
  ``Q5_K Q6_K Q8_0``, at the same size as the file's bytes.

With memory mapping (llama.cpp's default) the original pages of a copied tensor are read once
while loading and then stay in the page cache, counted in the process's resident memory until the
kernel reclaims them; so do the pages of weights uploaded to a GPU. The weights that stay mapped
are used for every token: page cache the kernel could drop, but only by re-reading them from disk.
``--load-mode none`` reads the weights into ordinary memory instead; ``mlock`` pins them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["HostLoad", "HostRepack", "LOAD_MODES", "host_memory_text"]

#: llama.cpp's ``--load-mode`` values that change host memory (``auto`` is ``mmap`` on a CPU)
LOAD_MODES = ("mmap", "none", "mmap+mlock", "mlock")

# bytes per block and elements per block of the types the CPU copies
_BLOCK = {
    "Q4_0": (18, 32), "Q4_1": (20, 32), "Q8_0": (34, 32), "Q4_K": (144, 256), "Q5_K": (176, 256),
    "Q6_K": (210, 256), "IQ4_XS": (136, 256), "Q2_K": (84, 256), "IQ4_NL": (18, 32),
    "MXFP4": (17, 32), "F16": (2, 1),
}  # fmt: skip
_AMX_ALIGN = {"Q4_0": 32, "Q4_1": 32, "Q8_0": 32, "Q4_K": 256, "Q5_K": 256, "Q6_K": 256,
              "IQ4_XS": 256, "F16": 16}  # fmt: skip
#: tensors llama.cpp reads row by row (GGML_OP_GET_ROWS), never through a repacked matmul
_ROWS = re.compile(r"(^|\.)(token_embd|per_layer_token_embd|pos_embd|token_types)\.")
_FEATURE = re.compile(r"([A-Z0-9_]+) = 1")


@dataclass(frozen=True)
class HostRepack:
    """The CPU features of the llama.cpp build that decide which weights it copies.

    ``features`` are the names its system info prints as ``= 1`` (``AVX2``, ``AVX512``,
    ``AMX_INT8``, ``REPACK``, ``NEON``, ``DOTPROD``, ``MATMUL_INT8``...). Without ``REPACK``
    and ``AMX_INT8`` nothing is copied."""

    features: frozenset[str] = frozenset()

    @classmethod
    def from_system_info(cls, text: str) -> HostRepack:
        return cls(frozenset(_FEATURE.findall(text or "")))

    @property
    def kinds(self) -> tuple[str, ...]:
        """The extra buffer types in llama.cpp's order of preference."""
        out = []
        if "AMX_INT8" in self.features:
            out.append("AMX")
        if "REPACK" in self.features:
            out.append("CPU_REPACK")
        return tuple(out)

    def describe(self) -> str:
        if not self.kinds:
            return "no weight repacking in this llama.cpp build"
        return "llama.cpp copies some weights into " + " and ".join(self.kinds)

    def copy_of(self, name: str, ggml_type: str, shape: tuple[int, ...]) -> tuple[str, int]:
        """(buffer type, bytes of the copy) for a weight held on the CPU, or ("", 0)."""
        role = _role(name)
        if not role:
            return "", 0
        return _copy(self.features, role == "expert", ggml_type, shape)


def may_copy(name: str, shape: tuple[int, ...]) -> bool:
    """Whether some build could copy this tensor (a matrix read by MUL_MAT or MUL_MAT_ID);
    ``HostRepack.copy_of`` then says whether this one does, for a type."""
    role = _role(name)
    return bool(role) and _n_dims(shape) == (3 if role == "expert" else 2)


def _n_dims(shape: tuple[int, ...]) -> int:
    """ggml_n_dims: the dimensions before the trailing ones."""
    dims = len(shape)
    while dims > 1 and shape[dims - 1] == 1:
        dims -= 1
    return dims


@functools.lru_cache(maxsize=4096)
def _role(name: str) -> str:
    """ "expert" (MUL_MAT_ID), "matrix" (MUL_MAT) or "" (read by rows, or not a weight)."""
    if _ROWS.search(name) or not name.endswith(".weight"):
        return ""
    return "expert" if "_exps." in name else "matrix"


@functools.lru_cache(maxsize=4096)
def _copy(
    features: frozenset[str], expert: bool, ggml_type: str, shape: tuple[int, ...]
) -> tuple[str, int]:
    if _n_dims(shape) != (3 if expert else 2):  # 2 for MUL_MAT, 3 for MUL_MAT_ID
        return "", 0
    if "AMX_INT8" in features and not expert:
        size = _amx_size(ggml_type, shape)
        if size:
            return "AMX", size
    if "REPACK" in features and _repacks(features, ggml_type, shape[1]):
        block, per = _BLOCK[ggml_type]
        rows = shape[1] * (shape[2] if expert else 1)
        return "CPU_REPACK", rows * (shape[0] // per) * block
    return "", 0


def _repacks(f: frozenset[str], ggml_type: str, rows: int) -> bool:
    neon_mm = "NEON" in f and "MATMUL_INT8" in f
    neon_dot = "NEON" in f and "DOTPROD" in f
    if ggml_type in ("Q4_0", "Q4_K", "IQ4_NL", "MXFP4") and "AVX2" in f:
        return rows % 8 == 0
    if ggml_type == "Q2_K" and "AVX512" in f:
        return rows % 8 == 0
    if ggml_type in ("Q4_0", "IQ4_NL", "MXFP4", "Q8_0") and (neon_mm or neon_dot):
        return rows % 4 == 0
    if ggml_type in ("Q4_K", "Q5_K", "Q6_K") and (neon_mm or neon_dot):
        return rows % 8 == 0
    return False


def _amx_size(ggml_type: str, shape: tuple[int, ...]) -> int:
    align = _AMX_ALIGN.get(ggml_type)
    k, n = shape[0], shape[1]
    if align is None or n % 32 or k % align:
        return 0
    block, per = _BLOCK[ggml_type]
    kb = k // per
    row = kb * block
    if ggml_type == "Q8_0":
        row += kb * 4  # s8s8 compensation
    elif ggml_type in ("Q4_K", "Q5_K"):
        row += kb * 4
    elif ggml_type == "IQ4_XS":
        row += kb * 2
    return n * row


@dataclass(frozen=True)
class HostLoad:
    """How llama.cpp will load the weights on this host: its load mode, and what it repacks.

    ``repack`` empty (the default) copies nothing, as with ``--no-repack``."""

    mode: str = "mmap"
    repack: HostRepack = HostRepack()

    def __post_init__(self) -> None:
        if self.mode not in LOAD_MODES:
            raise ValueError(f"load mode {self.mode!r}: use one of {', '.join(LOAD_MODES)}")

    @property
    def mapped(self) -> bool:
        return self.mode.startswith("mmap")

    @property
    def locked(self) -> bool:
        return self.mode.endswith("mlock")

    def flag(self) -> str:
        """The llama.cpp flags that give this load ("" for its defaults)."""
        parts = [] if self.mode == "mmap" else [f"--load-mode {self.mode}"]
        return " ".join(parts)


#: llama.cpp's own host memory besides its logged buffers: a fixed part (its contexts and
#: loader state) and a part per vocabulary token (token texts, scores, lookup tables), measured
#: as the resident memory a real load adds over its buffers: about 1.25 MiB for the tiny test
#: models, 51 MiB for Gemma 3 270M's 262,144 tokens (``--load-mode none``; bench/host_memory.py,
#: bench/fit_accuracy.py)
BOOKKEEPING_BYTES = 1_310_720
VOCAB_BYTES_PER_TOKEN = 200


def bookkeeping_bytes(n_vocab: int, meta_bytes: int, load: HostLoad) -> int:
    """Host memory llama.cpp uses besides its logged buffers: its tables, plus the file's
    metadata pages when it maps the file."""
    return BOOKKEEPING_BYTES + VOCAB_BYTES_PER_TOKEN * n_vocab + (meta_bytes if load.mapped else 0)


def _gib(b: float) -> str:
    return f"{b / 1024**3:.2f} GiB" if b >= 1024**3 else f"{b / 1024**2:.0f} MiB"


def host_memory_text(load: HostLoad, row_type: str, cpu: Any) -> str:
    """In words: what the host's RAM holds for one plan row (``cpu``: its CPU DeviceUse)."""
    parts = [f"{_gib(cpu.weights_bytes)} weights"]
    if cpu.mapped_bytes:
        parts[0] += (
            f" ({_gib(cpu.mapped_bytes)} of them the file's own pages, memory-mapped: cached "
            "by the system, used for every token)"
        )
    parts += [f"{_gib(cpu.kv_bytes)} KV cache", f"{_gib(cpu.compute_bytes)} compute buffers"]
    if cpu.overhead_bytes:
        parts.append(f"{_gib(cpu.overhead_bytes)} llama.cpp's own tables (vocabulary)")
    text = f"Host RAM for {row_type}: {_gib(cpu.total_bytes)} needed: {', '.join(parts)}."
    if cpu.load_cache_bytes:
        text += (
            f" Loading also reads {_gib(cpu.load_cache_bytes)} of the file once (weights that "
            "are copied or sent to a GPU); those pages stay cached until the system needs the "
            f"memory, so the process can show up to {_gib(cpu.peak_bytes)} resident."
        )
    if load.locked:
        text += " mlock pins the mapped pages: none of it can be swapped out or reclaimed."
    elif not load.mapped:
        text += " --load-mode none: the weights are read into memory, nothing is mapped."
    return f"{text} Weight repacking: {load.repack.describe()}."
