"""Worker handler ``dry_quantize``: exact per-tensor sizes of a target type or recipe.

llama.cpp's quantizer with ``dry_run`` decides every tensor's type without reading tensor data.
Its log gives sizes rounded to 0.01 MiB, so the exact bytes are recomputed from each tensor's
shape and chosen type (``ggml_row_size`` semantics, via the gguf package's block sizes).
"""

from __future__ import annotations

import time
from typing import Any

import llama_cpp

from qtapp.core.errors import QuantLensError
from qtapp.core.fit.quants import Recipe, tensor_bytes
from qtapp.core.jobs.engine.llama_log import LlamaLog
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


def parse_tensor_line(line: str) -> dict[str, Any] | None:
    match = TENSOR_LINE.match(line.strip())
    if not match:
        return None
    _, total, name, shape_text, src_type, _conv, _size, _new, new_type = match.groups()
    shape = [int(x) for x in shape_text.split(",") if x.strip()]
    dst = (new_type or src_type).upper()
    return {
        "name": name,
        "shape": shape,
        "src_type": src_type.upper(),
        "type": dst,
        "bytes": tensor_bytes(dst, shape),
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

    def on_line(level: int, line: str) -> None:
        row = parse_tensor_line(line)
        if row is not None:
            tensors.append(row)
        elif level >= 3 or "error" in line.lower():  # GGML_LOG_LEVEL_WARN = 3, ERROR = 4
            errors.append(line.strip())

    t0 = time.perf_counter()
    with LlamaLog(on_line):
        code = llama_cpp.llama_model_quantize(model.encode(), b"/dev/null", qp.pointer())
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
