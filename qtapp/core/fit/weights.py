"""Per-tensor sizes of a quant target: exact (llama.cpp's dry-run quantization) or estimated.

The estimate is instant (the tensor table times the type's typical bits per weight, with the
output projection kept at Q6_K or better as llama.cpp keeps it); the Fit page shows it while the
dry runs finish.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qtapp.core.fit.quants import QUANT_TYPES, RECIPES, QuantType, Recipe
from qtapp.core.gguf.model import ModelInfo

#: tensors llama.cpp's quantizer leaves in their type (besides 1-D tensors)
_KEEP = re.compile(
    r"(norm|ffn_gate_inp|ssm_conv1d|ssm_a|ssm_dt|ssm_d\b|pos_embd|time_mix|"
    r"shortconv\.conv|token_types|attn_rel_b|conv1d)"
)
FLOAT_TYPES = {"F32", "F16", "BF16"}


@dataclass
class Weights:
    """Per-tensor bytes of one target: exact (from the quantizer's dry run) or estimated."""

    target: str
    tensors: dict[str, int]
    exact: bool = False
    needs_imatrix: bool = False
    types: dict[str, str] = field(default_factory=dict)  # tensor -> ggml type (exact only)

    @property
    def total(self) -> int:
        return sum(self.tensors.values())


def quantizable(name: str, shape: tuple[int, ...]) -> bool:
    return len(shape) >= 2 and name.endswith(".weight") and not _KEEP.search(name)


def estimate_weights(
    m: ModelInfo, target: str, recipes: dict[str, Recipe] | None = None
) -> Weights:
    """Instant per-tensor sizes from the tensor table and the type's typical bits per weight.

    ``recipes``: the user's recipes (by name), besides the built-in ones.
    """
    entry: QuantType | Recipe | None = (
        QUANT_TYPES.get(target) or RECIPES.get(target) or (recipes or {}).get(target)
    )
    if entry is None:
        raise KeyError(target)
    qt = QUANT_TYPES[entry.base] if isinstance(entry, Recipe) else entry
    bump = 1.06 if isinstance(entry, Recipe) else 1.0  # recipes keep sensitive tensors higher
    out: dict[str, int] = {}
    head = "token_embd.weight" if m.tied_embeddings else "output.weight"
    for t in m.tensors:
        if quantizable(t.name, t.shape) and not (qt.family == "float" and t.type == "F32"):
            bpw = qt.bpw * bump
            if t.name == head and qt.family != "float":
                bpw = max(bpw, 6.5625)  # llama.cpp keeps the output projection at Q6_K or better
            out[t.name] = int(t.n_elements * bpw / 8)
        else:
            out[t.name] = t.bytes
    return Weights(target, out, exact=False, needs_imatrix=qt.needs_imatrix)


def current_weights(m: ModelInfo) -> Weights:
    return Weights(
        "current",
        {t.name: t.bytes for t in m.tensors},
        exact=True,
        types={t.name: t.type for t in m.tensors},
    )


def _main_type(target: str) -> str:
    """The ggml type most of a target's matrices get (``Q4_K_M`` -> ``Q4_K``)."""
    if target == "MXFP4_MOE":
        return "MXFP4"
    if target in ("IQ3_XS", "IQ3_M"):
        return "IQ3_S"
    if target == "IQ2_M":
        return "IQ2_S"
    return re.sub(r"_(S|M|L)$", "", target)


def tensor_type(m: ModelInfo, w: Weights, name: str, file_type: str, shape: tuple[int, ...]) -> str:
    """A tensor's ggml type in target ``w``: exact from the dry run, else the file's type for
    the tensors the quantizer keeps, else the target's main type (the output projection at
    Q6_K, as llama.cpp keeps it). Estimates only; exact weights replace them."""
    if w.exact or w.target == "current":
        return w.types.get(name, file_type)
    entry = QUANT_TYPES.get(w.target) or RECIPES.get(w.target)
    if entry is None or not quantizable(name, shape):
        return file_type
    qt = QUANT_TYPES[entry.base] if isinstance(entry, Recipe) else entry
    if qt.family == "float":
        return file_type if file_type == "F32" else qt.name
    head = "token_embd.weight" if m.tied_embeddings else "output.weight"
    return "Q6_K" if name == head else _main_type(qt.name)
