"""Generate small real GGUF models with the gguf package (for tests, the quick demo and benches).

The models have random weights but a real tokenizer and real shapes, so llama.cpp loads,
quantizes and evaluates them exactly as it would a trained model.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, TokenType

_SENTENCE = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which "
    "but have an had they you were their one all we can her has there been if more when will "
    "would who so no out up into do only what time about than other its them some could "
    "first two new may people my like over also after years world made"
)
_WORDS = _SENTENCE.split()


@dataclass(frozen=True)
class TinySpec:
    """The shape of a tiny llama-architecture model. Row sizes are multiples of 256 (QK_K)."""

    n_embd: int = 256
    n_ff: int = 512
    n_layer: int = 4
    n_head: int = 4
    n_head_kv: int = 2
    n_ctx_train: int = 2048
    seed: int = 0
    dtype: str = "f16"  # "f32" or "f16"


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    """An SPM vocabulary: specials, the 256 byte tokens, letters and common words."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{i:02X}>" for i in range(256)]
    types += [TokenType.BYTE] * 256
    pieces = list(string.ascii_letters + string.digits + ".,;:!?'\"-()")
    pieces += ["\u2581" + c for c in string.ascii_lowercase]
    pieces += ["\u2581" + w for w in _WORDS]
    pieces += ["\u2581"]
    seen = set(tokens)
    for piece in pieces:
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
            types.append(TokenType.NORMAL)
    while len(tokens) % 64:
        tokens.append(f"<pad{len(tokens)}>")
        types.append(TokenType.UNUSED)
    scores = [0.0 if t in (TokenType.CONTROL, TokenType.UNKNOWN) else -1.0 for t in types]
    for i, tok in enumerate(tokens):
        if types[i] == TokenType.NORMAL:
            scores[i] = float(len(tok))  # longer pieces win, like a trained SPM model
    return tokens, scores, [int(t) for t in types]


def add_tiny_tokenizer(writer: GGUFWriter, n_vocab: int | None = None) -> None:
    """Write the tiny SPM tokenizer's metadata, padded with unused tokens up to ``n_vocab``."""
    tokens, scores, types = tiny_vocab()
    if n_vocab is not None and n_vocab > len(tokens):
        extra = n_vocab - len(tokens)
        tokens = tokens + [f"<unused{i}>" for i in range(extra)]
        scores = scores + [0.0] * extra
        types = types + [int(TokenType.UNUSED)] * extra
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)


def write_tiny_llama(path: str | Path, spec: TinySpec | None = None) -> Path:
    """Write a llama-architecture GGUF with grouped-query attention and random weights."""
    spec = spec or TinySpec()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    n_vocab = len(tiny_vocab()[0])
    head_dim = spec.n_embd // spec.n_head
    dtype = np.float16 if spec.dtype == "f16" else np.float32

    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(spec.n_ctx_train)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.n_layer)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    writer.add_head_count_kv(spec.n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_file_type(1 if spec.dtype == "f16" else 0)
    add_tiny_tokenizer(writer)
    writer.add_add_eos_token(False)

    def weight(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(dtype)

    def norm(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    kv_dim = head_dim * spec.n_head_kv
    # numpy shapes are (rows, cols) = reversed ggml shapes
    writer.add_tensor("token_embd.weight", weight(n_vocab, spec.n_embd, scale=1.0))
    for i in range(spec.n_layer):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", norm(spec.n_embd))
        writer.add_tensor(p + "attn_q.weight", weight(spec.n_embd, spec.n_embd))
        writer.add_tensor(p + "attn_k.weight", weight(kv_dim, spec.n_embd))
        writer.add_tensor(p + "attn_v.weight", weight(kv_dim, spec.n_embd))
        writer.add_tensor(p + "attn_output.weight", weight(spec.n_embd, spec.n_embd))
        writer.add_tensor(p + "ffn_norm.weight", norm(spec.n_embd))
        writer.add_tensor(p + "ffn_gate.weight", weight(spec.n_ff, spec.n_embd))
        writer.add_tensor(p + "ffn_up.weight", weight(spec.n_ff, spec.n_embd))
        writer.add_tensor(p + "ffn_down.weight", weight(spec.n_embd, spec.n_ff))
    writer.add_tensor("output_norm.weight", norm(spec.n_embd))
    writer.add_tensor("output.weight", weight(n_vocab, spec.n_embd, scale=0.5))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


_ = GGMLQuantizationType  # re-exported for generators of other architectures
