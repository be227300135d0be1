"""Tensor groups of the sensitivity scan: a layer band (a contiguous run of blocks) x a tensor
class (attention q/k/v/o, ffn up/gate/down, routed and shared experts), plus the token
embedding and the output projection on their own.

Each group becomes one ``--tensor-type`` rule, so its regex is built here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qtapp.core.fit.weights import quantizable

_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")

#: tensor class by the name after ``blk.N.`` (first match wins; routed experts before ffn_*)
_CLASSES: list[tuple[str, re.Pattern[str]]] = [
    ("ffn_exps", re.compile(r"^ffn_(up|gate|down|gate_up)_exps\.")),
    ("ffn_shexp", re.compile(r"^ffn_(up|gate|down)_shexp\.")),
    ("attn_q", re.compile(r"^attn_q(_a|_b)?\.")),
    ("attn_k", re.compile(r"^attn_k(_b)?\.")),
    ("attn_v", re.compile(r"^attn_v(_b)?\.")),
    ("attn_qkv", re.compile(r"^attn_qkv\.")),
    ("attn_output", re.compile(r"^attn_output\.")),
    ("ffn_up", re.compile(r"^ffn_up\.")),
    ("ffn_gate", re.compile(r"^ffn_gate\.")),
    ("ffn_down", re.compile(r"^ffn_down\.")),
]


@dataclass(frozen=True)
class Group:
    """One group: its name (``b0-5.attn_q``), its tensors and the regex that catches exactly
    them in a recipe rule."""

    name: str
    tensors: tuple[str, ...]

    @property
    def pattern(self) -> str:
        """``^blk\\.(0|1|2)\\.attn_q\\.weight$`` when the group is every (layer, suffix)
        pair of its layers and suffixes, else the alternation of its names."""
        pairs = [_BLOCK.match(t) for t in self.tensors]
        if all(pairs):
            layers = sorted({int(m.group(1)) for m in pairs if m}, key=int)
            rests = sorted({m.group(2) for m in pairs if m})
            if len(layers) * len(rests) == len(self.tensors):
                rest = "|".join(re.escape(r) for r in rests)
                rest = rest if len(rests) == 1 else f"({rest})"
                return r"^blk\.(" + "|".join(map(str, layers)) + r")\." + rest + "$"
        return "^(" + "|".join(re.escape(t) for t in self.tensors) + ")$"


def bands(n_layer: int, n_bands: int) -> list[tuple[int, int]]:
    """``n_bands`` contiguous runs of block indices, (first, last) inclusive. From 3 bands on,
    the first and the last eighth of the layers (at least one each) are bands of their own:
    llama.cpp's own mixes and the *_XL recipes keep exactly those higher, and a band that
    mixes them with the middle layers cannot."""
    n_bands = max(1, min(n_bands, max(n_layer, 1)))
    if n_bands >= 3 and n_layer >= n_bands:
        edge = max(1, n_layer // 8)
        inner = _even(n_layer - 2 * edge, n_bands - 2, edge)
        return [(0, edge - 1), *inner, (n_layer - edge, n_layer - 1)]
    return _even(n_layer, n_bands, 0)


def _even(n: int, k: int, start: int) -> list[tuple[int, int]]:
    k = max(1, min(k, max(n, 1)))
    return [(start + i * n // k, start + max(i * n // k, (i + 1) * n // k - 1)) for i in range(k)]


def group_name(tensor: str, n_layer: int, n_bands: int) -> str:
    """The group a quantizable tensor belongs to."""
    if tensor.startswith("token_embd."):
        return "token_embd"
    if tensor.startswith("output."):
        return "output"
    m = _BLOCK.match(tensor)
    if m is None:
        return "other"
    layer, rest = int(m.group(1)), m.group(2)
    cls = next((name for name, rx in _CLASSES if rx.match(rest)), "other")
    for a, b in bands(n_layer, n_bands):
        if a <= layer <= b:
            return f"b{a}-{b}.{cls}"
    return f"b{layer}.{cls}"


def make_groups(
    tensors: list[tuple[str, tuple[int, ...]]], n_layer: int, n_bands: int
) -> list[Group]:
    """The groups of a model's quantizable tensors (name, ggml shape), in file order."""
    by: dict[str, list[str]] = {}
    for name, shape in tensors:
        if quantizable(name, tuple(shape)):
            by.setdefault(group_name(name, n_layer, n_bands), []).append(name)
    return [Group(g, tuple(names)) for g, names in by.items()]
