"""From a finished scan to a saved recipe that fits: a weights budget, or whole GPUs.

``tailor_to_budget``: the least-KLD mix whose exact weights fit ``budget`` bytes.
``tailor_to_plan``: the largest weights budget whose whole plan (weights + KV cache at the
chosen context and KV type + compute + overhead, per device, through the Fit page's planner)
still fits every GPU, found by bisection on the budget. Either way the recipe's size is then
confirmed by llama.cpp's own dry run (``exact_weights``), the number the Fit page shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.fit.plan import PlanInputs, PlanRow, plan_row
from qtapp.core.fit.quants import Recipe
from qtapp.core.fit.weights import Weights
from qtapp.core.gguf.model import ModelInfo
from qtapp.core.tailor.recipe import to_recipe
from qtapp.core.tailor.scan import Scan
from qtapp.core.tailor.solve import Solution, group_options, smallest_bytes, solve


@dataclass
class Tailored:
    recipe: Recipe
    solution: Solution
    budget: int  # the weights budget the solver used
    weights: Weights  # per-tensor exact bytes of the recipe (from the scan's llama.cpp files)
    row: PlanRow | None = None  # the planner's row for the GPUs (tailor_to_plan only)

    @property
    def bytes(self) -> int:
        return self.weights.total

    def to_dict(self, n_layer: int) -> dict[str, Any]:
        from qtapp.core.tailor.recipe import tensor_type_args

        out: dict[str, Any] = {
            "recipe": self.recipe.name,
            "base": self.recipe.base,
            "tensor_type_args": tensor_type_args(self.recipe, n_layer),
            "choice": self.solution.choice,
            "budget_bytes": self.budget,
            "bytes": self.bytes,
            "predicted_kld": self.solution.predicted_kld,
        }
        if self.row is not None:
            out["plan"] = {
                "verdict": self.row.verdict,
                "devices": [
                    {"device": u.device, "total_bytes": u.total_bytes, "budget": u.budget_bytes}
                    for u in self.row.devices
                ],
            }
        return out


def _fixed_bytes(scan: Scan) -> int:
    grouped = {n for g in scan.groups for n in g.tensors}
    return sum(b for n, b in scan.sizes[scan.high].items() if n not in grouped)


def corrected_deltas(scan: Scan) -> dict[str, dict[str, float]]:
    """The measured increases, with what they miss put back.

    One group's increase on a short window is often within noise of zero (and clamped there),
    and small losses add up to more than their sum: on Gemma 3 270M the groups' increases at
    Q4_K summed to well under the whole Q4_K model's. So each candidate's residual (the whole
    model's KLD at T, minus the reference, minus the groups' clamped increases at T) is spread
    over the groups that T really lowers, in proportion to their bytes at the high type."""
    out = {g: {t: max(0.0, v) for t, v in d.items()} for g, d in scan.delta.items()}
    high_types = scan.types[scan.high]
    for t, whole in scan.kld_all.items():
        lowered = {
            g.name: sum(scan.sizes[scan.high][n] for n in g.tensors)
            for g in scan.groups
            if any(scan.types[t][n] != high_types[n] for n in g.tensors)
        }
        total = sum(lowered.values())
        residual = whole - scan.reference_kld - sum(out[g][t] for g in lowered)
        if residual <= 0 or total <= 0:
            continue
        for g, nbytes in lowered.items():
            out[g][t] += residual * nbytes / total
    return out


def options_of(scan: Scan) -> dict[str, Any]:
    """Each group's options: the candidates (corrected increases), and the high type itself
    (no loss against the reference by definition)."""
    deltas = {g: {**d, scan.high: 0.0} for g, d in corrected_deltas(scan).items()}
    return group_options(scan.groups, scan.sizes, scan.types, deltas)


def smallest_mix(scan: Scan) -> int:
    """Exact bytes of the smallest mix the candidates allow."""
    return smallest_bytes(options_of(scan), _fixed_bytes(scan))


def _weights(name: str, scan: Scan, solution: Solution) -> Weights:
    by_tensor = {n: solution.choice[g.name] for g in scan.groups for n in g.tensors}
    sizes = {n: scan.sizes[by_tensor.get(n, scan.high)][n] for n in scan.sizes[scan.high]}
    types = {n: scan.types[by_tensor.get(n, scan.high)][n] for n in scan.types[scan.high]}
    return Weights(name, sizes, exact=True, types=types)


def tailor_to_budget(scan: Scan, budget: int, name: str, note: str = "") -> Tailored:
    """The least predicted-KLD mix of exact weights <= ``budget`` bytes (one-line error with
    the smallest achievable size when none)."""
    options = options_of(scan)
    solution = solve(options, _fixed_bytes(scan), budget, scan.reference_kld)
    text = note or (
        f"Tailored to {budget / 2**20:.1f} MiB of weights: {solution.bytes / 2**20:.2f} MiB, "
        f"predicted mean KLD {solution.predicted_kld:.4f}."
    )
    recipe = to_recipe(name, solution, scan.groups, scan.high, text)
    return Tailored(recipe, solution, budget, _weights(name, scan, solution))


def tailor_to_plan(scan: Scan, inp: PlanInputs, name: str, steps: int = 24) -> Tailored:
    """The best mix whose whole plan fits ``inp.gpus`` entirely (verdict "fits")."""
    if not inp.gpus:
        raise QuantLensError(
            "Tailoring to GPUs needs at least one GPU.", "Give --gpus, e.g. --gpus 1x8GiB."
        )
    lo = smallest_mix(scan)
    hi = sum(max(o.bytes for o in opts) for opts in options_of(scan).values()) + _fixed_bytes(scan)
    best: Tailored | None = None
    first = _fit(scan, inp, name, lo)
    if first.row is None or first.row.verdict != "fits":
        raise QuantLensError(
            f"Even the smallest mix ({lo / 2**20:.1f} MiB of weights) does not fit these GPUs "
            f"at a context of {inp.settings.n_ctx}.",
            "Use a smaller context, a smaller KV cache type (q8_0) or more GPU memory.",
        )
    best = first
    for _ in range(steps):
        if hi - lo <= max(1, hi // 2000):
            break
        mid = (lo + hi) // 2
        t = _fit(scan, inp, name, mid)
        if t.row is not None and t.row.verdict == "fits":
            best, lo = t, mid
        else:
            hi = mid
    return best


def _fit(scan: Scan, inp: PlanInputs, name: str, budget: int) -> Tailored:
    t = tailor_to_budget(scan, budget, name)
    plan_in = PlanInputs(**{**inp.__dict__, "recipes": {**inp.recipes, name: t.recipe}})
    plan_in.weights = {**inp.weights, name: t.weights}
    t.row = plan_row(plan_in, t.weights)
    return t


def confirm_size(m: ModelInfo, t: Tailored) -> int:
    """llama.cpp's dry run of the recipe (in a child, cached); raises if it disagrees with the
    scan's sizes (that would make the solver's budget check wrong)."""
    from qtapp.core.fit.exact import exact_weights

    w = exact_weights(m, t.recipe.name, t.recipe)
    if w.total != t.bytes:
        raise QuantLensError(
            f"llama.cpp sizes the tailored recipe at {w.total} bytes, the scan at {t.bytes}.",
            "Run the scan again (--rescan); if it persists, please report it.",
        )
    return w.total


def save(t: Tailored) -> Path:
    from qtapp.core.fit.recipes_store import save_user_recipe

    return save_user_recipe(t.recipe)


def default_name(model: Path, budget: int) -> str:
    """The recipe's default name: the model's stem without its precision suffix, the budget."""
    from qtapp.core.tailor.recipe import recipe_name

    stem = model.stem.removesuffix("-F16").removesuffix("-BF16").removesuffix("-F32")
    return recipe_name(stem, budget)


def tailor_and_save(
    m: ModelInfo,
    scan: Scan,
    *,
    budget: int | None = None,
    inp: PlanInputs | None = None,
    name: str | None = None,
) -> tuple[Tailored, Path]:
    """The one path from a finished scan to a saved recipe, for the CLI and the window alike:
    the least-KLD mix of at most ``budget`` bytes of weights, or (``inp``) the best mix whose
    whole plan fits ``inp.gpus``; its size confirmed by llama.cpp's dry run; saved as a user
    recipe. Slow (a dry run in a child): call it off the GUI thread."""
    if (budget is None) == (inp is None):
        raise ValueError("give exactly one of budget and inp")
    if budget is not None:
        t = tailor_to_budget(scan, budget, name or default_name(m.path, budget))
    else:
        assert inp is not None
        total = sum(d.total_bytes for d in inp.gpus)
        t = tailor_to_plan(scan, inp, name or default_name(m.path, total))
    confirm_size(m, t)
    return t, save(t)
