"""Measured, not predicted: quantize a target for real and score its KL divergence against
the source on an evaluation text (one that is not the scan's calibration text).

Shared by ``quantlens tailor`` and ``bench/tailor.py``. Runs are recorded in the results
store as any quantize and evaluate run, so the Compare page shows them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.runs import EvalRecorder, eval_params
from qtapp.core.fit.exact import ManyWeights
from qtapp.core.fit.quants import Recipe
from qtapp.core.gguf.model import ModelInfo
from qtapp.core.jobs.events import Cancelled, Event, Failed, Finished
from qtapp.core.jobs.job import JobSpec, run_to_end
from qtapp.core.quantize.jobs import QuantizeOptions, quantize_spec, run_quantize
from qtapp.core.quantize.outputs import output_path

#: the standard types a tailored mix is compared with (no importance matrix needed)
STANDARD = ("Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K")
RESULT_KEYS = ("kld_mean", "kld_mean_err", "kld_p99", "kld_median", "same_top_pct", "ppl", "tokens")


def standard_sizes(m: ModelInfo, types: tuple[str, ...] = STANDARD) -> dict[str, int]:
    """Exact weights bytes of the standard types (llama.cpp's dry runs, cached like the Fit
    page's)."""
    many = ManyWeights(m, list(types))
    spec = many.spec()
    if spec is not None:
        terminal = run_to_end(spec, end=many.end)
        if isinstance(terminal, Failed):
            raise QuantLensError(terminal.message, terminal.hint)
        if isinstance(terminal, Cancelled):
            raise KeyboardInterrupt
    return {t: many.weights[t].total for t in types if t in many.weights}


def nearby(sizes: dict[str, int], nbytes: int) -> list[str]:
    """The largest standard type not bigger than ``nbytes`` and the smallest bigger one."""
    below = [t for t, b in sizes.items() if b <= nbytes]
    above = [t for t, b in sizes.items() if b > nbytes]
    out = []
    if below:
        out.append(max(below, key=lambda t: sizes[t]))
    if above:
        out.append(min(above, key=lambda t: sizes[t]))
    return out


def measure(
    model: ModelInfo,
    target: str,
    out_dir: Path,
    text: Path,
    chunks: int,
    ctx: int = 512,
    recipe: Recipe | None = None,
    requantize: bool = False,
    overwrite: bool = False,
    threads: int = 0,
    on_event: Callable[[Event], Any] | None = None,
) -> dict[str, Any]:
    """Quantize ``target`` (a type, or ``recipe``) into ``out_dir`` unless that file exists
    from an earlier run and ``overwrite`` is off, then score it; the metrics and file."""
    options = QuantizeOptions(
        out_dir=str(out_dir),
        allow_requantize=requantize,
        overwrite=overwrite,
        nthread=threads,
        user_recipes=[recipe.to_dict()] if recipe is not None else [],
    )
    path = output_path(model.path, target, out_dir)
    if overwrite or not path.exists():
        terminal = run_quantize(quantize_spec(model.path, target, options), on_event, record=True)
        if isinstance(terminal, Failed):
            raise QuantLensError(terminal.message, terminal.hint)
        if not isinstance(terminal, Finished):
            raise KeyboardInterrupt
    params = eval_params(path, model.path, text, ctx, chunks, threads=threads or None)
    rec = EvalRecorder(path, params, label=target)
    rec.begin()

    def seen(ev: Event) -> None:
        rec.add(ev)
        if on_event is not None:
            on_event(ev)

    try:
        terminal = run_to_end(JobSpec("evaluate", params), seen, end=rec.add)
    finally:
        rec.finish()
        rec.wait()
    if isinstance(terminal, Failed):
        raise QuantLensError(terminal.message, terminal.hint)
    if not isinstance(terminal, Finished):
        raise KeyboardInterrupt
    r = terminal.result
    out = {k: r[k] for k in RESULT_KEYS if k in r}
    out.update(target=target, path=str(path), bytes=os.path.getsize(path))
    return out
