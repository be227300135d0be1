"""Header-only GGUF models of several architectures, sparse on disk (for fit tests and the seed).

A file gets its full metadata (a real tokenizer) and tensor infos, then ``os.truncate`` extends it
to the size the tensors claim: the data reads as zeros and takes no disk space. llama.cpp loads
such files, sizes them and quantizes them like any other (the weights are simply zero), so they
serve the planner's checks: dry loads, real loads' buffer sizes, dry-run quantization.

Shapes follow llama.cpp's ``src/models/<arch>.cpp`` ``load_arch_tensors`` (the vendored version).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

from qtapp.testing.tiny import add_tiny_tokenizer, tiny_vocab

F32 = GGMLQuantizationType.F32
F16 = GGMLQuantizationType.F16
BF16 = GGMLQuantizationType.BF16

Tensors = list[tuple[str, tuple[int, ...], GGMLQuantizationType]]  # ggml shapes (ne0 first)


def _nbytes(shape: tuple[int, ...], qtype: GGMLQuantizationType) -> int:
    block, size = GGML_QUANT_SIZES[qtype]
    rows = 1
    for d in shape[1:]:
        rows *= d
    return rows * (shape[0] // block) * size


def write_header_only(
    path: str | Path,
    arch: str,
    add_kv: Callable[[GGUFWriter], None],
    tensors: Tensors,
    n_vocab: int | None = None,
) -> Path:
    """Write metadata + tensor infos, then extend the file sparsely to its full size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), arch)
    add_tiny_tokenizer(writer, n_vocab)
    add_kv(writer)
    align = writer.data_alignment
    total = 0
    for name, shape, qtype in tensors:
        nbytes = _nbytes(shape, qtype)
        writer.add_tensor_info(name, tuple(reversed(shape)), np.dtype(np.float32), nbytes, qtype)
        total += (nbytes + align - 1) // align * align
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header = path.stat().st_size
    data_start = (header + align - 1) // align * align
    os.truncate(path, data_start + total)
    return path


def vocab_size() -> int:
    return len(tiny_vocab()[0])


def _add_shape_kv(
    w: GGUFWriter, name: str, n_ctx: int, n_embd: int, n_layer: int, n_ff: int
) -> None:
    w.add_name(name)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)


def _add_heads_kv(w: GGUFWriter, n_head: int, n_head_kv: int, head_dim: int) -> None:
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)


def _attn_proj(
    p: str, d: int, q: int, kvd: int, dt: GGMLQuantizationType, q_rows: int | None = None
) -> Tensors:
    """attn_q/k/v/output of one layer; ``q_rows``: attn_q's width where it carries a gate too."""
    return [
        (p + "attn_q.weight", (d, q_rows or q), dt), (p + "attn_k.weight", (d, kvd), dt),
        (p + "attn_v.weight", (d, kvd), dt), (p + "attn_output.weight", (q, d), dt),
    ]  # fmt: skip


def _qk_norms(p: str, head_dim: int) -> Tensors:
    return [
        (p + "attn_k_norm.weight", (head_dim,), F32),
        (p + "attn_q_norm.weight", (head_dim,), F32),
    ]


# -- gemma3: sliding-window attention (5 local layers, then 1 global) ---------------------------
@dataclass(frozen=True)
class Gemma3Spec:
    n_embd: int = 256
    n_ff: int = 512
    n_layer: int = 6
    n_head: int = 4
    n_head_kv: int = 1
    head_dim: int = 64
    n_swa: int = 128
    n_ctx_train: int = 8192


def write_tiny_gemma3(path: str | Path, spec: Gemma3Spec | None = None) -> Path:
    s = spec or Gemma3Spec()
    nv = vocab_size()

    def kv(w: GGUFWriter) -> None:
        _add_shape_kv(w, "tiny-gemma3", s.n_ctx_train, s.n_embd, s.n_layer, s.n_ff)
        _add_heads_kv(w, s.n_head, s.n_head_kv, s.head_dim)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_rope_freq_base(1e6)
        w.add_sliding_window(s.n_swa)
        w.add_file_type(1)

    t: Tensors = [
        ("token_embd.weight", (s.n_embd, nv), F16),
        ("output_norm.weight", (s.n_embd,), F32),
    ]
    q, kvd = s.head_dim * s.n_head, s.head_dim * s.n_head_kv
    for i in range(s.n_layer):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", (s.n_embd,), F32), *_attn_proj(p, s.n_embd, q, kvd, F16),
              (p + "post_attention_norm.weight", (s.n_embd,), F32), *_qk_norms(p, s.head_dim),
              (p + "ffn_norm.weight", (s.n_embd,), F32),
              (p + "ffn_gate.weight", (s.n_embd, s.n_ff), F16),
              (p + "ffn_up.weight", (s.n_embd, s.n_ff), F16),
              (p + "ffn_down.weight", (s.n_ff, s.n_embd), F16),
              (p + "post_ffw_norm.weight", (s.n_embd,), F32)]  # fmt: skip
    return write_header_only(path, "gemma3", kv, t)


# -- qwen3moe: mixture of experts ---------------------------------------------------------------
@dataclass(frozen=True)
class Qwen3MoeSpec:
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 64
    n_expert: int = 8
    n_expert_used: int = 2
    n_ff_exp: int = 256
    n_ctx_train: int = 4096


def write_tiny_qwen3moe(path: str | Path, spec: Qwen3MoeSpec | None = None) -> Path:
    s = spec or Qwen3MoeSpec()
    nv = vocab_size()

    def kv(w: GGUFWriter) -> None:
        n_ff = s.n_ff_exp * s.n_expert_used
        _add_shape_kv(w, "tiny-qwen3moe", s.n_ctx_train, s.n_embd, s.n_layer, n_ff)
        w.add_expert_feed_forward_length(s.n_ff_exp)
        _add_heads_kv(w, s.n_head, s.n_head_kv, s.head_dim)
        w.add_expert_count(s.n_expert)
        w.add_expert_used_count(s.n_expert_used)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_rope_freq_base(1e6)
        w.add_file_type(1)

    q, kvd, e = s.head_dim * s.n_head, s.head_dim * s.n_head_kv, s.n_expert
    t: Tensors = [
        ("token_embd.weight", (s.n_embd, nv), F16), ("output_norm.weight", (s.n_embd,), F32),
        ("output.weight", (s.n_embd, nv), F16),
    ]  # fmt: skip
    for i in range(s.n_layer):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", (s.n_embd,), F32), *_attn_proj(p, s.n_embd, q, kvd, F16),
              *_qk_norms(p, s.head_dim), (p + "ffn_norm.weight", (s.n_embd,), F32),
              (p + "ffn_gate_inp.weight", (s.n_embd, e), F32),
              (p + "ffn_gate_exps.weight", (s.n_embd, s.n_ff_exp, e), F16),
              (p + "ffn_down_exps.weight", (s.n_ff_exp, s.n_embd, e), F16),
              (p + "ffn_up_exps.weight", (s.n_embd, s.n_ff_exp, e), F16)]  # fmt: skip
    return write_header_only(path, "qwen3moe", kv, t)


# -- qwen35moe: hybrid Gated DeltaNet (recurrent) + full attention, MoE with a shared expert -----
@dataclass(frozen=True)
class Qwen35MoeSpec:
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 64
    n_expert: int = 8
    n_expert_used: int = 2
    n_ff_exp: int = 256
    n_ff_shexp: int = 256
    full_attention_interval: int = 4
    ssm_d_conv: int = 4
    ssm_d_state: int = 64  # linear key/value head dim
    ssm_n_group: int = 2  # linear key heads
    ssm_dt_rank: int = 4  # linear value heads
    n_ctx_train: int = 4096
    n_vocab: int | None = None  # None: the tiny tokenizer's size
    dtype: GGMLQuantizationType = F16
    name: str = "tiny-qwen35moe"


#: Qwen/Qwen3.5-397B-A17B's text config (hidden 4096, 60 layers, 32 heads / 2 KV heads of 256,
#: 512 experts top-10 of 1024, one shared expert of 1024, Gated DeltaNet with 16 key heads and
#: 64 value heads of 128, conv kernel 4, full attention every 4th layer, vocab 248320, 262144 ctx)
QWEN35_397B = Qwen35MoeSpec(
    n_embd=4096, n_layer=60, n_head=32, n_head_kv=2, head_dim=256, n_expert=512,
    n_expert_used=10, n_ff_exp=1024, n_ff_shexp=1024, full_attention_interval=4, ssm_d_conv=4,
    ssm_d_state=128, ssm_n_group=16, ssm_dt_rank=64, n_ctx_train=262144, n_vocab=248320,
    dtype=BF16, name="Qwen3.5-397B-A17B (header-only seed)",
)  # fmt: skip


def write_qwen35moe(path: str | Path, spec: Qwen35MoeSpec | None = None) -> Path:
    s = spec or Qwen35MoeSpec()
    nv = s.n_vocab or vocab_size()
    dt = s.dtype
    key_dim, value_dim = s.ssm_d_state * s.ssm_n_group, s.ssm_d_state * s.ssm_dt_rank
    conv_dim = key_dim * 2 + value_dim
    rot = s.head_dim // 4

    def kv(w: GGUFWriter) -> None:
        _add_shape_kv(w, s.name, s.n_ctx_train, s.n_embd, s.n_layer, s.n_ff_exp)
        w.add_expert_feed_forward_length(s.n_ff_exp)
        w.add_expert_shared_feed_forward_length(s.n_ff_shexp)
        _add_heads_kv(w, s.n_head, s.n_head_kv, s.head_dim)
        w.add_rope_dimension_count(rot)
        w.add_rope_dimension_sections(_sections(rot))
        w.add_expert_count(s.n_expert)
        w.add_expert_used_count(s.n_expert_used)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_rope_freq_base(1e7)
        w.add_ssm_conv_kernel(s.ssm_d_conv)
        w.add_ssm_inner_size(value_dim)
        w.add_ssm_state_size(s.ssm_d_state)
        w.add_ssm_time_step_rank(s.ssm_dt_rank)
        w.add_ssm_group_count(s.ssm_n_group)
        w.add_uint32(f"{w.arch}.full_attention_interval", s.full_attention_interval)
        w.add_file_type(32 if dt == BF16 else 1)

    e, d = s.n_expert, s.n_embd
    t: Tensors = [("token_embd.weight", (d, nv), dt), ("output_norm.weight", (d,), F32),
                  ("output.weight", (d, nv), dt)]  # fmt: skip
    for i in range(s.n_layer):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", (d,), F32), (p + "post_attention_norm.weight", (d,), F32)]
        if (i + 1) % s.full_attention_interval != 0:  # Gated DeltaNet layer
            t += [(p + "attn_qkv.weight", (d, conv_dim), dt),
                  (p + "attn_gate.weight", (d, value_dim), dt),
                  (p + "ssm_conv1d.weight", (s.ssm_d_conv, conv_dim), F32),
                  (p + "ssm_dt.bias", (s.ssm_dt_rank,), F32),
                  (p + "ssm_a", (s.ssm_dt_rank,), F32),
                  (p + "ssm_beta.weight", (d, s.ssm_dt_rank), dt),
                  (p + "ssm_alpha.weight", (d, s.ssm_dt_rank), dt),
                  (p + "ssm_norm.weight", (s.ssm_d_state,), F32),
                  (p + "ssm_out.weight", (value_dim, d), dt)]  # fmt: skip
        else:
            q = s.head_dim * s.n_head
            kvd = s.head_dim * s.n_head_kv
            t += [*_attn_proj(p, d, q, kvd, dt, q_rows=q * 2),
                  (p + "attn_q_norm.weight", (s.head_dim,), F32),
                  (p + "attn_k_norm.weight", (s.head_dim,), F32)]  # fmt: skip
        t += [(p + "ffn_gate_inp.weight", (d, e), F32),
              (p + "ffn_gate_exps.weight", (d, s.n_ff_exp, e), dt),
              (p + "ffn_up_exps.weight", (d, s.n_ff_exp, e), dt),
              (p + "ffn_down_exps.weight", (s.n_ff_exp, d, e), dt),
              (p + "ffn_gate_inp_shexp.weight", (d,), F32),
              (p + "ffn_gate_shexp.weight", (d, s.n_ff_shexp), dt),
              (p + "ffn_up_shexp.weight", (d, s.n_ff_shexp), dt),
              (p + "ffn_down_shexp.weight", (s.n_ff_shexp, d), dt)]  # fmt: skip
    return write_header_only(path, "qwen35moe", kv, t, n_vocab=nv)


def _sections(rot: int) -> list[int]:
    """M-RoPE sections of the rotary half-dimensions (Qwen3.5 uses 11/11/10 for 64 dims)."""
    half = rot // 2
    a = (half + 2) // 3
    return [a, a, half - 2 * a, 0]


GENERATORS: dict[str, Callable[[str | Path], Path]] = {
    "gemma3": write_tiny_gemma3,
    "qwen3moe": write_tiny_qwen3moe,
    "qwen35moe": write_qwen35moe,
}


# -- qwen2: a dense 7B with biases on q/k/v (Qwen2.5-7B's shape) --------------------------------
@dataclass(frozen=True)
class Qwen2Spec:
    n_embd: int = 3584
    n_ff: int = 18944
    n_layer: int = 28
    n_head: int = 28
    n_head_kv: int = 4
    head_dim: int = 128
    n_ctx_train: int = 32768
    n_vocab: int = 152064
    dtype: GGMLQuantizationType = BF16
    name: str = "Qwen2.5-7B (header-only)"


#: Qwen/Qwen2.5-7B-Instruct's config: hidden 3584, 28 layers, 28 heads / 4 KV heads of 128,
#: intermediate 18944, vocab 152064, untied output, 32k context
QWEN25_7B = Qwen2Spec()


def write_qwen2(path: str | Path, spec: Qwen2Spec | None = None) -> Path:
    s = spec or QWEN25_7B
    dt, d, nv = s.dtype, s.n_embd, s.n_vocab
    q, kvd = s.head_dim * s.n_head, s.head_dim * s.n_head_kv

    def kv(w: GGUFWriter) -> None:
        _add_shape_kv(w, s.name, s.n_ctx_train, d, s.n_layer, s.n_ff)
        w.add_head_count(s.n_head)
        w.add_head_count_kv(s.n_head_kv)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_rope_freq_base(1e6)
        w.add_file_type(32 if dt == BF16 else 1)

    t: Tensors = [("token_embd.weight", (d, nv), dt), ("output_norm.weight", (d,), F32),
                  ("output.weight", (d, nv), dt)]  # fmt: skip
    for i in range(s.n_layer):
        p = f"blk.{i}."
        t += [(p + "attn_norm.weight", (d,), F32), *_attn_proj(p, d, q, kvd, dt),
              (p + "attn_q.bias", (q,), F32), (p + "attn_k.bias", (kvd,), F32),
              (p + "attn_v.bias", (kvd,), F32), (p + "ffn_norm.weight", (d,), F32),
              (p + "ffn_gate.weight", (d, s.n_ff), dt), (p + "ffn_up.weight", (d, s.n_ff), dt),
              (p + "ffn_down.weight", (s.n_ff, d), dt)]  # fmt: skip
    return write_header_only(path, "qwen2", kv, t, n_vocab=nv)
