"""A measured speed curve: pp and tg tokens/s (mean and sd) at several context depths, or at
several GPU-layer counts, as a speed sweep stores it with its run.

A run keeps the curve in its metrics as a compact JSON string (``speed_curve``, or
``offload_curve``), so the planner reads it with the other metrics, without the curve blobs.
Between two measured depths the time per token is interpolated linearly (attention's cost grows
linearly with the tokens in the cache); outside the measured range there is no measured value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CurvePoint:
    x: int  # the depth (tokens in the cache) or the GPU-layer / CPU-expert-layer count
    pp: float | None = None
    pp_sd: float | None = None
    tg: float | None = None
    tg_sd: float | None = None

    def value(self, which: str) -> float | None:
        v: float | None = getattr(self, which)
        return v if v is not None and math.isfinite(v) and v > 0 else None

    def sd(self, which: str) -> float | None:
        v: float | None = getattr(self, f"{which}_sd")
        return v if v is not None and math.isfinite(v) else None


def _num(v: Any) -> float | None:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
        return float(v)
    return None


@dataclass(frozen=True)
class SpeedCurve:
    points: tuple[CurvePoint, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.points)

    @classmethod
    def from_points(cls, points: Iterable[Mapping[str, Any]], key: str = "depth") -> SpeedCurve:
        """From ``{"depth": d, "test": "pp"|"tg", "avg_ts": v, "stddev_ts": sd}`` items (what
        the sweep job reports); a later item for the same x and test replaces an earlier one."""
        by_x: dict[int, dict[str, float | None]] = {}
        for p in points:
            x, test = p.get(key), p.get("test")
            if not isinstance(x, (int, float)) or test not in ("pp", "tg"):
                continue
            slot = by_x.setdefault(int(x), {})
            slot[str(test)] = _num(p.get("avg_ts"))
            slot[f"{test}_sd"] = _num(p.get("stddev_ts"))
        return cls(tuple(CurvePoint(x, **v) for x, v in sorted(by_x.items())))

    @classmethod
    def from_series(
        cls, series: Mapping[str, tuple[Iterable[float], Iterable[float], Iterable[float | None]]]
    ) -> SpeedCurve:
        """From live-curve series ``pp_depth`` / ``tg_depth`` (xs, ys, errs), or the
        ``*_offload`` ones."""
        items: list[dict[str, Any]] = []
        for name, (xs, ys, errs) in series.items():
            test = name[:2]
            for x, y, e in zip(xs, ys, errs, strict=False):
                items.append({"depth": int(x), "test": test, "avg_ts": y, "stddev_ts": e})
        return cls.from_points(items)

    def to_json(self) -> str:
        rows = [
            [p.x, *(None if v is None else round(v, 4) for v in (p.pp, p.pp_sd, p.tg, p.tg_sd))]
            for p in self.points
        ]
        return json.dumps(rows, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: Any) -> SpeedCurve:
        """A stored curve; anything unreadable is an empty curve."""
        if not isinstance(text, str) or not text:
            return cls()
        try:
            rows = json.loads(text)
            return cls(
                tuple(
                    CurvePoint(int(r[0]), *(_num(v) for v in r[1:5]))
                    for r in rows
                    if isinstance(r, list) and len(r) >= 5
                )
            )
        except (ValueError, TypeError):
            return cls()

    # -- reading ---------------------------------------------------------------------------
    def measured(self, which: str) -> list[tuple[int, float, float | None]]:
        """(x, mean, sd) of the points that measured ``which`` ("pp" | "tg"), by x."""
        return [(p.x, v, p.sd(which)) for p in self.points if (v := p.value(which)) is not None]

    def span(self, which: str) -> tuple[int, int] | None:
        pts = self.measured(which)
        return (pts[0][0], pts[-1][0]) if pts else None

    def at(self, which: str, x: float) -> float | None:
        """The measured value at ``x``: exact at a point, interpolated (time per token, linear)
        between two, None outside the measured range."""
        pts = self.measured(which)
        if not pts or x < pts[0][0] or x > pts[-1][0]:
            return None
        for (x0, v0, _s0), (x1, v1, _s1) in zip(pts, pts[1:], strict=False):
            if x0 <= x <= x1:
                if x1 == x0:
                    return v0
                t = (x - x0) / (x1 - x0)
                return 1.0 / ((1 - t) / v0 + t / v1)
        return pts[-1][1] if x == pts[-1][0] else None

    def nearest(self, which: str, x: float) -> tuple[int, float] | None:
        pts = self.measured(which)
        if not pts:
            return None
        best = min(pts, key=lambda p: (abs(p[0] - x), p[0]))
        return best[0], best[1]
