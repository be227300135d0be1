"""The catalogue of quant types llama.cpp can produce, and the dynamic *_XL recipes.

The list mirrors llama.cpp's own (``LLAMA_FTYPE_*`` in llama.h, the options of
``tools/quantize``); a test checks it against the constants of the installed llama-cpp-python.
Quality order is llama.cpp's published one (the PPL deltas ``llama-quantize --help`` prints for
Llama-3-8B, then bits per weight for the IQ types it gives no figure for).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qtapp.core.light_import import submodule

if TYPE_CHECKING:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
else:  # the type table without numpy (see qtapp.core.light_import)
    _gguf = submodule("gguf", "constants")
    GGML_QUANT_SIZES, GGMLQuantizationType = _gguf.GGML_QUANT_SIZES, _gguf.GGMLQuantizationType


@dataclass(frozen=True)
class QuantType:
    """One target of ``llama-quantize``: a llama.cpp file type (``llama_ftype``)."""

    name: str
    ftype: int
    bpw: float  # typical bits per weight of the whole file, for instant estimates
    note: str
    needs_imatrix: bool = False
    family: str = "k-quant"  # "float", "legacy", "k-quant", "i-quant", "ternary", "mxfp4"
    special: str = ""  # why this type only suits some models (ternary, MoE)


# (name, llama_ftype, typical bpw, llama.cpp's note, needs imatrix, family, special use)
_TYPES: list[tuple[str, int, float, str, bool, str, str]] = [
    ("F32", 0, 32.0, "26.00G @ 7B", False, "float", ""),
    ("F16", 1, 16.0, "14.00G, +0.0020 ppl @ Mistral-7B", False, "float", ""),
    ("BF16", 32, 16.0, "14.00G, -0.0050 ppl @ Mistral-7B", False, "float", ""),
    ("Q8_0", 7, 8.5, "7.96G, +0.0026 ppl @ Llama-3-8B", False, "legacy", ""),
    ("Q6_K", 18, 6.56, "6.14G, +0.0217 ppl @ Llama-3-8B", False, "k-quant", ""),
    ("Q5_K_M", 17, 5.7, "5.33G, +0.0569 ppl @ Llama-3-8B", False, "k-quant", ""),
    ("Q5_K_S", 16, 5.54, "5.21G, +0.1049 ppl @ Llama-3-8B", False, "k-quant", ""),
    ("Q5_1", 9, 6.0, "5.65G, +0.1062 ppl @ Llama-3-8B", False, "legacy", ""),
    ("Q5_0", 8, 5.5, "5.21G, +0.1316 ppl @ Llama-3-8B", False, "legacy", ""),
    ("Q4_K_M", 15, 4.89, "4.58G, +0.1754 ppl @ Llama-3-8B", False, "k-quant", ""),
    ("Q4_K_S", 14, 4.67, "4.37G, +0.2689 ppl @ Llama-3-8B", False, "k-quant", ""),
    ("Q4_1", 3, 5.0, "4.78G, +0.4511 ppl @ Llama-3-8B", False, "legacy", ""),
    ("IQ4_NL", 25, 4.5, "4.50 bpw non-linear quantization", False, "i-quant", ""),
    ("Q4_0", 2, 4.5, "4.34G, +0.4685 ppl @ Llama-3-8B", False, "legacy", ""),
    ("IQ4_XS", 30, 4.25, "4.25 bpw non-linear quantization", False, "i-quant", ""),
    ("Q3_K_L", 13, 4.27, "4.03G, +0.5562 ppl @ Llama-3-8B", False, "k-quant", ""),
    ("Q3_K_M", 12, 3.91, "3.74G, +0.6569 ppl @ Llama-3-8B", False, "k-quant", ""),
    ("IQ3_M", 27, 3.66, "3.66 bpw quantization mix", False, "i-quant", ""),
    ("IQ3_S", 26, 3.44, "3.44 bpw quantization", False, "i-quant", ""),
    ("Q3_K_S", 11, 3.5, "3.41G, +1.6321 ppl @ Llama-3-8B", False, "k-quant", ""),
    ("IQ3_XS", 22, 3.3, "3.3 bpw quantization", True, "i-quant", ""),
    ("IQ3_XXS", 23, 3.06, "3.06 bpw quantization", True, "i-quant", ""),
    ("Q2_K", 10, 3.0, "2.96G, +3.5199 ppl @ Llama-3-8B", False, "k-quant", ""),
    ("Q2_K_S", 21, 2.9, "2.96G, +3.1836 ppl @ Llama-3-8B", True, "k-quant", ""),
    ("IQ2_M", 29, 2.7, "2.7 bpw quantization", True, "i-quant", ""),
    ("IQ2_S", 28, 2.5, "2.5 bpw quantization", True, "i-quant", ""),
    ("Q2_0", 41, 2.25, "2.25 bpw quantization (group 64)", False, "legacy", ""),
    ("IQ2_XS", 20, 2.31, "2.31 bpw quantization", True, "i-quant", ""),
    ("IQ2_XXS", 19, 2.06, "2.06 bpw quantization", True, "i-quant", ""),
    ("IQ1_M", 31, 1.75, "1.75 bpw quantization", True, "i-quant", ""),
    ("IQ1_S", 24, 1.56, "1.56 bpw quantization", True, "i-quant", ""),
    ("Q1_0", 40, 1.125, "1.125 bpw quantization", False, "legacy", ""),
    (
        "MXFP4_MOE",
        38,
        4.25,
        "MXFP4 for expert tensors",
        False,
        "mxfp4",
        "meant for mixture-of-experts models",
    ),
    (
        "TQ2_0",
        37,
        2.06,
        "2.06 bpw ternarization",
        False,
        "ternary",
        "only for models trained ternary (BitNet-like)",
    ),
    (
        "TQ1_0",
        36,
        1.69,
        "1.69 bpw ternarization",
        False,
        "ternary",
        "only for models trained ternary (BitNet-like)",
    ),
]

QUANT_TYPES: dict[str, QuantType] = {
    name: QuantType(name, ftype, bpw, note, imat, fam, special)
    for name, ftype, bpw, note, imat, fam, special in _TYPES
}
#: aliases llama-quantize accepts
ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}

#: ggml tensor types by name
#: (``GGMLQuantizationType`` of the gguf package: BF16 = 30, TQ1_0 = 34 ...)
GGML_TYPES: dict[str, int] = {t.name: int(t.value) for t in GGMLQuantizationType}
#: (block size, bytes per block) of every type, with those newer than the gguf package
#: (from ggml-common.h of the pinned llama.cpp: block_q2_0 is an fp16 scale + 64 2-bit quants)
BLOCK_SIZES: dict[str, tuple[int, int]] = {t.name: GGML_QUANT_SIZES[t] for t in GGML_QUANT_SIZES}
for _name, _id, _size in (("Q2_0", 42, (64, 18)),):
    GGML_TYPES.setdefault(_name, _id)
    BLOCK_SIZES.setdefault(_name, _size)


def ggml_type_id(name: str) -> int:
    try:
        return GGML_TYPES[name.upper()]
    except KeyError as exc:
        raise ValueError(f"unknown tensor type {name!r}; one of {', '.join(GGML_TYPES)}") from exc


def tensor_bytes(type_name: str, shape: list[int] | tuple[int, ...]) -> int:
    """Exact bytes of a tensor of ggml ``shape`` (ne0 first) stored as ``type_name``."""
    block, type_size = BLOCK_SIZES[type_name.upper()]
    ne0 = int(shape[0])
    rows = 1
    for dim in shape[1:]:
        rows *= int(dim)
    return rows * (ne0 // block) * type_size


# -- dynamic recipes ---------------------------------------------------------------------------

#: one step up in precision, as the *_XL recipes use it
STEP_UP = {
    "Q2_K": "Q3_K",
    "Q3_K": "Q4_K",
    "Q4_K": "Q5_K",
    "Q5_K": "Q6_K",
    "Q6_K": "Q8_0",
    "Q8_0": "F16",
}


@dataclass(frozen=True)
class Rule:
    """A tensor-type override: tensors whose name matches ``pattern`` (regex search) get ``type``.

    ``{first}`` and ``{last}`` in a pattern stand for the first and last block index.
    """

    pattern: str
    type: str
    why: str = ""

    def resolve(self, n_layer: int) -> str:
        return self.pattern.replace("{first}", "0").replace("{last}", str(max(n_layer - 1, 0)))


@dataclass(frozen=True)
class Recipe:
    """A base llama.cpp type plus ordered overrides.

    The first matching rule wins, as in llama.cpp.
    """

    name: str
    base: str  # a QUANT_TYPES name
    rules: tuple[Rule, ...] = field(default_factory=tuple)
    description: str = ""
    builtin: bool = True

    def overrides(self, n_layer: int) -> list[tuple[str, str]]:
        """(regex, ggml type name) pairs ready for ``tt_overrides``."""
        return [(r.resolve(n_layer), r.type) for r in self.rules]

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "base": self.base,
            "description": self.description,
            "rules": [{"pattern": r.pattern, "type": r.type, "why": r.why} for r in self.rules],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """A recipe from its JSON form (a user's file, or the params of a worker job)."""
        rules = tuple(
            Rule(str(r["pattern"]), str(r["type"]), str(r.get("why", "")))
            for r in data.get("rules", [])
        )
        recipe = cls(
            str(data["name"]),
            str(data["base"]),
            rules,
            str(data.get("description", "")),
            builtin=False,
        )
        recipe.validate()
        return recipe

    def validate(self) -> None:
        if self.base not in QUANT_TYPES:
            raise ValueError(f"recipe {self.name}: unknown base type {self.base}")
        for rule in self.rules:
            ggml_type_id(rule.type)
            try:
                re.compile(rule.resolve(1))
            except re.error as exc:
                raise ValueError(
                    f"recipe {self.name}: bad pattern {rule.pattern!r}: {exc}"
                ) from exc

    def matches(self, tensor_names: list[str], n_layer: int) -> dict[str, list[str]]:
        """Which tensors each rule catches (first match wins), keyed by the rule's pattern."""
        caught: dict[str, list[str]] = {r.pattern: [] for r in self.rules}
        compiled = [(r.pattern, re.compile(r.resolve(n_layer))) for r in self.rules]
        for name in tensor_names:
            for pattern, rx in compiled:
                if rx.search(name):
                    caught[pattern].append(name)
                    break
        return caught


def _xl(base_ftype: str, block: str) -> Recipe:
    up = STEP_UP[block]
    high = "Q8_0" if block in ("Q5_K", "Q6_K") else "Q6_K"
    rules = (
        Rule(r"^output\.weight$", high, "the output projection is the most sensitive tensor"),
        Rule(r"^token_embd\.weight$", high if block != "Q2_K" else "Q4_K", "token embeddings"),
        Rule(r"^blk\.({first}|{last})\.", up, "first and last layers"),
        Rule(r"attn_|ssm_", up, "attention and recurrent-state projections"),
        Rule(r"_shexp\.", up, "shared experts run for every token"),
        Rule(r"ffn_down", up, "ffn_down is more sensitive than ffn_up / ffn_gate"),
        Rule(r"ffn_(up|gate)_exps\.", block, "routed experts stay at the base type"),
    )
    name = block + "_XL"
    return Recipe(
        name,
        base_ftype,
        rules,
        f"{base_ftype} with sensitive tensors kept one step higher ({up}); "
        f"routed ffn_up/ffn_gate experts at {block}.",
    )


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        _xl("Q2_K", "Q2_K"),
        _xl("Q3_K_M", "Q3_K"),
        _xl("Q4_K_M", "Q4_K"),
        _xl("Q5_K_M", "Q5_K"),
        _xl("Q6_K", "Q6_K"),
    )
}

#: llama.cpp's published quality order, worst first; each recipe sits just above its base
QUALITY_ORDER: list[str] = [
    "TQ1_0",
    "TQ2_0",
    "Q1_0",
    "IQ1_S",
    "IQ1_M",
    "IQ2_XXS",
    "IQ2_XS",
    "Q2_0",
    "IQ2_S",
    "IQ2_M",
    "Q2_K_S",
    "Q2_K",
    "Q2_K_XL",
    "IQ3_XXS",
    "IQ3_XS",
    "Q3_K_S",
    "IQ3_S",
    "IQ3_M",
    "Q3_K_M",
    "Q3_K_L",
    "Q3_K_XL",
    "IQ4_XS",
    "Q4_0",
    "IQ4_NL",
    "MXFP4_MOE",
    "Q4_1",
    "Q4_K_S",
    "Q4_K_M",
    "Q4_K_XL",
    "Q5_0",
    "Q5_1",
    "Q5_K_S",
    "Q5_K_M",
    "Q5_K_XL",
    "Q6_K",
    "Q6_K_XL",
    "Q8_0",
    "F16",
    "BF16",
    "F32",
]


def quality_rank(name: str) -> int:
    """Higher is better; unknown names (user recipes) rank by their base type."""
    name = ALIASES.get(name, name)
    if name in QUALITY_ORDER:
        return QUALITY_ORDER.index(name)
    return -1


def resolve_target(name: str, user_recipes: dict[str, Recipe] | None = None) -> Recipe | QuantType:
    """A type name, an alias or a recipe name -> the catalogue entry."""
    key = ALIASES.get(name.upper(), name.upper())
    if key in QUANT_TYPES:
        return QUANT_TYPES[key]
    recipes = {**RECIPES, **(user_recipes or {})}
    for rname, recipe in recipes.items():
        if rname.upper() == name.upper():
            return recipe
    raise ValueError(
        f"unknown quant type or recipe {name!r}. Known: {', '.join(QUANT_TYPES)}, "
        f"{', '.join(recipes)}"
    )


# -- names of quantized files -----------------------------------------------------------------

_SPLIT_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$")
_UD_SUFFIX = re.compile(r"[-_.]UD$", re.IGNORECASE)  # Unsloth's "UD-Q4_K_XL" naming


def split_quant_name(
    text: str | object, recipes: dict[str, Recipe] | None = None
) -> tuple[str, str | None]:
    """``gemma-3-270m-it-Q4_K_M.gguf`` -> (``gemma-3-270m-it``, ``Q4_K_M``).

    A name without a type gives (stem, None). Split suffixes (``-00001-of-00003``) are dropped;
    aliases come back canonical.
    """
    from pathlib import Path

    recipes = recipes or {}
    stem = Path(str(text).strip()).name
    if stem.lower().endswith(".gguf"):
        stem = stem[:-5]
    stem = _SPLIT_SUFFIX.sub("", stem)
    upper = stem.upper()
    for name in sorted({*QUANT_TYPES, *RECIPES, *ALIASES, *recipes}, key=len, reverse=True):
        key = name.upper()
        if upper == key or (
            upper.endswith(key) and len(upper) > len(key) and upper[-len(key) - 1] in "-_. "
        ):
            canon = ALIASES.get(name, name)
            if canon not in QUANT_TYPES and canon not in RECIPES:
                canon = next((r for r in recipes if r.upper() == key), canon)
            rest = stem[: max(len(stem) - len(key) - 1, 0)]
            return _UD_SUFFIX.sub("", rest), canon
    return stem, None
