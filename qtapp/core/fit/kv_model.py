"""Analytic KV cache, recurrent state and compute buffer sizes: instant, for dragging sliders.

The KV rules copy llama.cpp's (``llama-context.cpp``, ``llama-kv-cache-iswa.cpp``,
``llama-hparams.cpp`` of the vendored version): the context is padded to 256 cells; sliding-window
layers keep ``pad(min(n_ctx, n_swa * n_seq + n_ubatch), 256)`` cells unless ``swa_full``;
recurrent layers keep one F32 conv state (``n_embd_r``) and one F32 SSM state (``n_embd_s``) per
sequence. The compute buffer is an estimate (the dry load replaces it with llama.cpp's figure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qtapp.core.errors import QuantLensError
from qtapp.core.gguf.model import ModelInfo
from qtapp.core.light_import import submodule

if TYPE_CHECKING:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
else:  # the type table without numpy (see qtapp.core.light_import)
    _gguf = submodule("gguf", "constants")
    GGML_QUANT_SIZES, GGMLQuantizationType = _gguf.GGML_QUANT_SIZES, _gguf.GGMLQuantizationType

#: llama.cpp's n_ctx is a uint32; beyond this no KV cache could be allocated anyway
MAX_CTX = 2**31 - 1
KV_TYPES = ("f16", "bf16", "f32", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl")


def pad(x: int, n: int) -> int:
    return (x + n - 1) // n * n


def row_bytes(type_name: str, n: int) -> int:
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[type_name.upper()]]
    return n // block * size


@dataclass(frozen=True)
class ContextSettings:
    """How llama.cpp is run: its tool defaults (as llama-server) unless the user changes them."""

    n_ctx: int = 4096
    type_k: str = "f16"
    type_v: str = "f16"
    n_batch: int = 2048
    n_ubatch: int = 512
    n_seq_max: int = 1
    swa_full: bool = False
    flash_attn: str = "auto"  # "auto" | "on" | "off"

    def validate(self) -> None:
        """Refuse settings llama.cpp cannot run (its context and batch sizes are uint32)."""
        if not 1 <= self.n_ctx <= MAX_CTX:
            raise QuantLensError(
                f"Context {self.n_ctx} is out of range.",
                f"Use a context (--ctx) from 1 to {MAX_CTX:,} tokens, e.g. 4096.",
            )
        for name, value in (
            ("n_batch (--batch)", self.n_batch),
            ("n_ubatch (--ubatch)", self.n_ubatch),
        ):
            if not 1 <= value <= MAX_CTX:
                raise QuantLensError(
                    f"{name} {value} is out of range.", "Use a positive size such as 512 or 2048."
                )
        for kind, t in (("K", self.type_k), ("V", self.type_v)):
            if t.lower() not in KV_TYPES:
                raise QuantLensError(
                    f"Unknown KV cache type {t!r} for {kind}.", f"Use one of {', '.join(KV_TYPES)}."
                )

    @property
    def flash_attn_on(self) -> bool:
        """A quantized V cache needs flash attention, so the plan turns it on."""
        if self.type_v.lower() not in ("f16", "f32", "bf16"):
            return True
        return self.flash_attn != "off"

    def to_dict(self) -> dict[str, object]:
        return {
            "n_ctx": self.n_ctx,
            "type_k": self.type_k,
            "type_v": self.type_v,
            "n_batch": self.n_batch,
            "n_ubatch": self.n_ubatch,
            "n_seq_max": self.n_seq_max,
            "swa_full": self.swa_full,
            "flash_attn": "on"
            if self.flash_attn_on
            and self.flash_attn == "auto"
            and self.type_v.lower() not in ("f16", "f32", "bf16")
            else self.flash_attn,
        }


@dataclass
class KvEstimate:
    per_layer: list[int]  # bytes of KV (attention layers) or state (recurrent layers), per layer
    cells: int  # non-SWA cells
    swa_cells: int
    kv_bytes: int = 0
    recurrent_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.kv_bytes + self.recurrent_bytes


def n_embd_r(m: ModelInfo) -> int:
    if m.key("shortconv.l_cache"):
        return m.n_embd * (int(m.key("shortconv.l_cache")) - 1)
    s = m.ssm
    d_conv = s["conv_kernel"]
    return (d_conv - 1 if d_conv > 0 else 0) * (
        s["inner_size"] + 2 * s["group_count"] * s["state_size"]
    )


def n_embd_s(m: ModelInfo) -> int:
    s = m.ssm
    return s["state_size"] * s["inner_size"]


def kv_estimate(m: ModelInfo, cs: ContextSettings) -> KvEstimate:
    n_ctx = pad(max(cs.n_ctx, 1), 256)
    swa_cells = n_ctx if cs.swa_full else pad(min(n_ctx, m.n_swa * cs.n_seq_max + cs.n_ubatch), 256)
    per_layer: list[int] = []
    kv = rec = 0
    rs_layer = 4 * (n_embd_r(m) + n_embd_s(m)) * max(1, cs.n_seq_max)
    for il in range(m.n_layer):
        if m.recurrent_layers[il]:
            per_layer.append(rs_layer)
            rec += rs_layer
            continue
        n_kv = m.n_head_kv[il]
        if n_kv == 0:
            per_layer.append(0)
            continue
        cells = swa_cells if m.swa_layers[il] else n_ctx
        b = cells * (
            row_bytes(cs.type_k, m.head_dim_k * n_kv) + row_bytes(cs.type_v, m.head_dim_v * n_kv)
        )
        per_layer.append(b)
        kv += b
    return KvEstimate(per_layer, n_ctx, swa_cells, kv, rec)


def compute_parts(m: ModelInfo, cs: ContextSettings) -> tuple[int, int]:
    """(output phase, layer phase) peaks of the compute buffer, bytes.

    Fitted to llama.cpp's CPU dry loads of the tiny test architectures, Gemma 3 270M and the
    397B seed (within a few MiB): the F32 logits of one micro-batch live on the output layer's
    device; every device also holds the KQ mask (F16 with flash attention, F32 without), a few
    hidden-state rows and, without flash attention, the KQ scores of one layer.
    """
    ub = min(cs.n_ubatch, cs.n_batch)
    n_kv = pad(max(cs.n_ctx, 1), 256)
    swa = any(m.swa_layers)
    swa_cells = n_kv if cs.swa_full else pad(min(n_kv, m.n_swa * cs.n_seq_max + cs.n_ubatch), 256)
    mask_bytes = 2 if cs.flash_attn_on else 4
    mask = n_kv * ub * mask_bytes + (swa_cells * ub * mask_bytes if swa else 0)
    graph = mask + 4 * m.n_embd * ub * 4 + 2 * m.n_ff * ub * 4
    if not cs.flash_attn_on:
        graph += max(m.n_head or [1]) * n_kv * ub * 4
    hidden_rows = 4 if m.is_moe else 2  # MoE graphs keep routing copies of the hidden state
    output_phase = m.n_vocab * ub * 4 + hidden_rows * m.n_embd * ub * 4
    return output_phase, graph


def compute_estimate(m: ModelInfo, cs: ContextSettings, has_output: bool = True) -> int:
    """The compute buffer of a device running layers (and the output layer when ``has_output``).

    The graph allocator reuses memory, so the peak is the larger phase, not their sum.
    """
    output_phase, graph = compute_parts(m, cs)
    return max(output_phase, graph) if has_output else graph


def output_buffer(m: ModelInfo, cs: ContextSettings) -> int:
    """llama.cpp's host output buffer: one row of F32 logits per sequence."""
    return m.n_vocab * 4 * max(1, cs.n_seq_max)


def host_compute_estimate(m: ModelInfo, cs: ContextSettings) -> int:
    """The CPU's compute buffer when all layers are on GPUs (inputs, embeddings lookup).

    FACTS.md: 12-76 MiB on an H200 for 1B/3B models at n_ubatch 512.
    """
    ub = min(cs.n_ubatch, cs.n_batch)
    return max(m.n_embd * ub * 4 * 3, 12 * 1024 * 1024)
