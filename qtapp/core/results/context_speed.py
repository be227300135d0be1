"""Speed at your context: each stored run's measured tokens/s at the context the user names,
read from its speed curve (``quantlens speed`` or the Evaluate page's depths).

Within a run's measured depths the value is interpolated (time per token, linear in depth);
outside them nothing is made up: the run says how deep it was measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qtapp.core.fit.speed_curve import SpeedCurve


@dataclass(frozen=True)
class ContextSpeed:
    run_id: int
    model: str
    label: str
    curve: SpeedCurve
    tg: float | None  # at the asked context, None when it was not measured that deep
    pp: float | None

    def span(self) -> tuple[int, int] | None:
        return self.curve.span("tg") or self.curve.span("pp")

    def describe(self, depth: int) -> str:
        """``"tg 41.2 t/s, pp 512 t/s"`` or why there is no figure at ``depth``."""
        if self.tg is None and self.pp is None:
            span = self.span()
            if span is None:
                return "no speed curve"
            return f"measured from {span[0]:,} to {span[1]:,} tokens only"
        parts = []
        if self.tg is not None:
            parts.append(f"tg {self.tg:,.1f} t/s")
        if self.pp is not None:
            parts.append(f"pp {self.pp:,.0f} t/s")
        return ", ".join(parts)


def run_curve(run: Any) -> SpeedCurve:
    """A stored run's speed curve: its sweep, else its plain pp512/tg128 (depth 0)."""
    metrics = run.metrics if isinstance(run.metrics, dict) else {}
    curve = SpeedCurve.from_json(metrics.get("speed_curve"))
    if curve:
        return curve
    items = [
        {
            "depth": 0,
            "test": t,
            "avg_ts": metrics.get(f"{t}_tps"),
            "stddev_ts": metrics.get(f"{t}_tps_sd"),
        }
        for t in ("pp", "tg")
        if metrics.get(f"{t}_tps") is not None
    ]
    return SpeedCurve.from_points(items)


def speeds_at_context(runs: Sequence[Any], depth: int) -> list[ContextSpeed]:
    """Every evaluation run with a speed measurement, its tokens/s at ``depth`` tokens."""
    out = []
    for run in runs:
        if getattr(run, "kind", "") != "eval" or run.state not in ("finished", "partial"):
            continue
        curve = run_curve(run)
        if not curve:
            continue
        out.append(
            ContextSpeed(
                int(run.id),
                str(run.model_name),
                str(run.label),
                curve,
                curve.at("tg", depth),
                curve.at("pp", depth),
            )
        )
    return out
