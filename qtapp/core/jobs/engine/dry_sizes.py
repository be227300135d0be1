"""Worker handler ``dry_quantize_many``: the quantizer's dry run for many targets in one child.

Starting a child per target costs about half a second each; a fit table of 40 types and recipes
runs them all here, one after the other, reporting progress and keeping going past a failure.
They size a lean copy of the header (no vocabulary arrays): the same answer, 5x faster for a
large vocabulary. With ``memory`` (a ``dry_load``'s parameters) the same child first makes the
no-alloc load of that copy: a plan then needs one child per core, not one more.
"""

from __future__ import annotations

import tempfile
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.gguf.lean import lean_copy
from qtapp.core.jobs.engine.dry_load import load_figures
from qtapp.core.jobs.engine.dry_run import block_count, dry_quantize
from qtapp.core.jobs.events import Progress


def dry_quantize_many(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """params: model, targets (list), plus dry_quantize's optional fields; ``lean`` false
    sizes from the model itself (the tests compare both); ``memory``: a dry load's settings,
    its result under "memory" (or its error under "memory_error")."""
    model = str(params["model"])
    targets = [str(t) for t in params.get("targets", [])]
    memory = params.get("memory")
    common = {k: v for k, v in params.items() if k not in ("targets", "target", "lean", "memory")}
    if not common.get("n_layer"):
        common["n_layer"] = block_count(model)
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    out: dict[str, Any] = {"results": results, "errors": errors}
    with tempfile.TemporaryDirectory(prefix="quantlens-lean-") as tmp:
        lean = _lean(model, tmp) if params.get("lean", True) else model
        if memory is not None:
            try:
                out["memory"] = load_figures(lean, {**memory, "model": lean})
            except QuantLensError as exc:
                out["memory_error"] = str(exc).replace(lean, model)
        for i, target in enumerate(targets):
            try:
                r = dry_quantize({**common, "model": lean, "target": target}, emit)
                results[target] = {
                    "tensors": [
                        {"name": t["name"], "type": t["type"], "bytes": t["bytes"]}
                        for t in r["tensors"]
                    ],
                    "needs_imatrix": r["needs_imatrix"],
                    "bytes": r["bytes"],
                }
            except (QuantLensError, ValueError) as exc:
                errors[target] = str(exc).replace(lean, model)
            emit(Progress(fraction=(i + 1) / max(len(targets), 1), message=target))
    return out


def _lean(model: str, folder: str) -> str:
    """A lean copy of the header to size and load from (see :mod:`qtapp.core.gguf.lean`: the
    quantizer never reads the vocabulary, the no-alloc load only its size); the model itself
    when the copy cannot be made (a full disk: the dry runs are only slower)."""
    try:
        return str(lean_copy(model, folder, no_vocab=True))
    except (OSError, QuantLensError):
        return model
