"""Worker handler ``dry_quantize_many``: the quantizer's dry run for many targets in one child.

Starting a child per target costs about half a second each; a fit table of 40 types and recipes
runs them all here, one after the other, reporting progress and keeping going past a failure.
"""

from __future__ import annotations

from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.jobs.engine.dry_run import block_count, dry_quantize
from qtapp.core.jobs.events import Progress


def dry_quantize_many(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """params: model, targets (list), plus dry_quantize's optional fields."""
    model = str(params["model"])
    targets = [str(t) for t in params.get("targets", [])]
    common = {k: v for k, v in params.items() if k not in ("targets", "target")}
    if not common.get("n_layer"):
        common["n_layer"] = block_count(model)
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for i, target in enumerate(targets):
        try:
            r = dry_quantize({**common, "target": target}, emit)
            results[target] = {
                "tensors": [
                    {"name": t["name"], "type": t["type"], "bytes": t["bytes"]}
                    for t in r["tensors"]
                ],
                "needs_imatrix": r["needs_imatrix"],
                "bytes": r["bytes"],
            }
        except (QuantLensError, ValueError) as exc:
            errors[target] = str(exc)
        emit(Progress(fraction=(i + 1) / max(len(targets), 1), message=target))
    return {"results": results, "errors": errors}
