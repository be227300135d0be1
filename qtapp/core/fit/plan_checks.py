"""How far past plans were off: the user's own evaluations of a model, planned against measured.

Every evaluation stores what the planner predicted per device (``mem_pred_<dev>_bytes``) and
what it measured: the GPUs' memory in use from NVML (``mem_peak_<dev>_bytes``, the window's
memory panel samples it) and, on the host, the worker's resident memory with the model loaded
minus its resident memory without it (``worker_rss_model_bytes - worker_rss_base_bytes``, read
by the worker itself). The Fit page and ``quantlens plan`` show the summary per device.

The plan counts what llama.cpp allocates; resident memory counts the pages it touched, so a
plan above the measurement is the safe side (a compute buffer sized for the worst batch is
rarely filled), and one below it is a plan that was short.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qtapp.core.fit.quality_order import _same_model, stored_eval_runs
from qtapp.core.fit.quants import Recipe

__all__ = ["PlanCheck", "plan_checks", "plan_checks_from_runs", "plan_checks_text"]


@dataclass
class PlanCheck:
    """One device: the planned and measured bytes of each evaluation that recorded both."""

    device: str  # "CPU", "CUDA0", ...
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (planned, measured) bytes

    @property
    def runs(self) -> int:
        return len(self.pairs)

    @property
    def worst_short(self) -> float:
        """The largest share by which a measurement exceeded its plan (0 when none did)."""
        return max((max(0.0, m / p - 1) for p, m in self.pairs), default=0.0)

    @property
    def mean_off(self) -> float:
        """Mean of measured / planned - 1 (negative: the plans were above what was used)."""
        return sum(m / p - 1 for p, m in self.pairs) / len(self.pairs) if self.pairs else 0.0


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def plan_checks_from_runs(
    runs: Iterable[Any], model: Any, recipes: Mapping[str, Recipe] | None = None
) -> list[PlanCheck]:
    """Per device, the evaluations of ``model``'s quants that stored a plan and a measurement."""
    checks: dict[str, PlanCheck] = {}
    for run in runs:
        if run.kind != "eval" or run.state not in ("finished", "partial"):
            continue
        if not _same_model(run, model, dict(recipes or {})):
            continue
        m = run.metrics if isinstance(run.metrics, dict) else {}
        for key, value in m.items():
            if not (key.startswith("mem_pred_") and key.endswith("_bytes")):
                continue
            dev = key.removeprefix("mem_pred_").removesuffix("_bytes")
            planned = _int(value)
            if dev == "cpu":
                base, loaded = (
                    _int(m.get("worker_rss_base_bytes")),
                    _int(m.get("worker_rss_model_bytes")),
                )
                measured = loaded - base if base and loaded and loaded > base else None
            else:
                measured = _int(m.get(f"mem_peak_{dev}_bytes"))
            if planned and measured:
                checks.setdefault(dev.upper(), PlanCheck(dev.upper())).pairs.append(
                    (planned, measured)
                )
    return sorted(checks.values(), key=lambda c: (c.device == "CPU", c.device))


def plan_checks(model: Any, recipes: Mapping[str, Recipe] | None = None) -> list[PlanCheck]:
    """Read the results store once; no checks when it is missing or unreadable."""
    runs = stored_eval_runs("plan checks")
    return [] if runs is None else plan_checks_from_runs(runs, model, recipes)


def _size(b: float) -> str:
    return f"{b / 1024**3:.2f} GiB" if b >= 1024**3 else f"{b / 1024**2:.0f} MiB"


def plan_checks_text(checks: list[PlanCheck]) -> str:
    """One sentence per device, or "" when no evaluation recorded both figures."""
    parts = []
    for c in checks:
        where = "host RAM" if c.device == "CPU" else c.device
        planned, measured = c.pairs[-1]
        last = f"last: {_size(measured)} used of {_size(planned)} planned"
        verdict = (
            f"a run used up to {c.worst_short:.0%} more than planned"
            if c.worst_short > 0.005
            else "no run used more than planned"
        )
        parts.append(
            f"{where}: {c.runs} evaluation{'s' if c.runs != 1 else ''} of this model, "
            f"{c.mean_off:+.0%} on average against the plan ({last}); {verdict}"
        )
    return "Your own runs checked the plan: " + "; ".join(parts) + "." if parts else ""
