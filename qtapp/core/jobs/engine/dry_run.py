"""Worker handler ``dry_quantize``: exact per-tensor sizes of a target type or recipe.

llama.cpp's quantizer with ``dry_run`` decides every tensor's type without reading tensor data.
Its log gives sizes rounded to 0.01 MiB, so the exact bytes are recomputed from each tensor's
shape and chosen type (``ggml_row_size`` semantics, via the gguf package's block sizes).
"""

from __future__ import annotations

import functools
import re
import time
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.fit.quants import Recipe, tensor_bytes
from qtapp.core.jobs.engine.llama_lib import llama_cpp
from qtapp.core.jobs.engine.llama_log import LogRecord
from qtapp.core.jobs.engine.qparams import TENSOR_LINE, QuantParams, QuantRequest


def block_count(path: str) -> int:
    """Layer count from the GGUF header (for recipes that name the first and last layer).

    Uses QuantLens's own header reader: the gguf package's reader decodes every vocabulary
    string (about 8 s for Gemma's 262k tokens); this takes milliseconds.
    """
    from qtapp.core.gguf.reader import read_gguf

    meta = read_gguf(path).metadata
    arch = meta.get("general.architecture")
    value = meta.get(f"{arch}.block_count") if isinstance(arch, str) else None
    return int(value) if isinstance(value, int) else 0


def _tensor_count(_errors: list[str], tensors: list[dict[str, Any]]) -> int:
    """How many tensors the log announced (the ``[ i/ N]`` counter of each line)."""
    return max((t.get("of", 0) for t in tensors), default=0)


#: the tensor lines of a whole log text (one regex pass: a plan parses ~45k of them)
TENSOR_LINES = re.compile(r"^[ \t]*" + TENSOR_LINE.pattern.removeprefix("^"), re.MULTILINE)
ERROR_LINE = re.compile(r"^.*error.*$", re.MULTILINE | re.IGNORECASE)


def parse_tensor_lines(text: str) -> list[dict[str, Any]]:
    return [_tensor_row(m.groups()) for m in TENSOR_LINES.finditer(text)]


@functools.lru_cache(maxsize=4096)
def _shape_bytes(shape_text: str, dst: str) -> tuple[tuple[int, ...], int]:
    shape = tuple(int(x) for x in shape_text.split(",") if x.strip())
    return shape, tensor_bytes(dst, shape)


def _tensor_row(groups: tuple[str | Any, ...]) -> dict[str, Any]:
    _, total, name, shape_text, src_type, _conv, _size, _new, new_type = groups
    dst = (new_type or src_type).upper()
    shape, nbytes = _shape_bytes(shape_text, dst)  # expert tensors repeat a few shapes
    return {
        "name": name,
        "shape": list(shape),
        "src_type": src_type.upper(),
        "type": dst,
        "bytes": nbytes,
        "of": int(total),
    }


def dry_quantize(
    params: dict[str, Any], emit: Any, imatrix: dict[str, Any] | None = None
) -> dict[str, Any]:
    """params: model, target, and the optional QuantRequest fields; user_recipes as dicts.

    ``imatrix`` (the quantize handler passes it) makes the dry run choose tensor types as the
    real run will: llama.cpp picks some differently with an importance matrix (IQ3_XXS's
    attn_v, the first ffn_down layers of IQ4_*).
    """
    model = str(params["model"])
    recipes = {r["name"]: Recipe.from_dict(r) for r in params.get("user_recipes", [])}
    fields = {
        k: v
        for k, v in params.items()
        if k in QuantRequest.__dataclass_fields__ and k not in ("user_recipes",)
    }
    request = QuantRequest(
        **{k: v for k, v in fields.items() if k != "model"}, user_recipes=recipes
    )
    if not request.n_layer:
        request.n_layer = block_count(model)
    qp = QuantParams(request, dry_run=True, imatrix=imatrix)
    tensors: list[dict[str, Any]] = []
    errors: list[str] = []

    t0 = time.perf_counter()
    with LogRecord() as log:
        code = llama_cpp.llama_model_quantize(model.encode(), b"/dev/null", qp.pointer())
    for level, text in log.runs():
        tensors += parse_tensor_lines(text)
        # warnings and errors (GGML_LOG_LEVEL_WARN = 3, ERROR = 4), and lines naming an error
        if level >= 3:
            suspects = text.splitlines()
        else:  # a plain substring test first: a regex over every line costs 2 ms per run
            suspects = ERROR_LINE.findall(text) if "rror" in text or "RROR" in text else []
        errors += [x.strip() for x in suspects if x.strip() and not TENSOR_LINE.match(x.strip())]
    expected = _tensor_count(errors, tensors)
    if code == 0 and tensors and expected and len(tensors) != expected:
        raise QuantLensError(
            f"Sized only {len(tensors)} of {expected} tensors for {request.target}.",
            "This llama.cpp build writes a tensor type QuantLens does not know; please report it.",
        )
    if code != 0 or not tensors:
        detail = next((e for e in errors if e), "llama.cpp could not read the model")
        raise QuantLensError(
            f"Could not size {request.target} for {model}: {detail}",
            "Check that the file is a complete GGUF model.",
        )
    return {
        "target": request.target,
        "ftype": qp.ftype_name,
        "rules": qp.rules,
        "tensors": tensors,
        "bytes": sum(t["bytes"] for t in tensors),
        "needs_imatrix": imatrix is None
        and any("require an imatrix" in e or "requires an importance matrix" in e for e in errors),
        "seconds": time.perf_counter() - t0,
    }
