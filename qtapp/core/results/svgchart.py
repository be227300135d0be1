"""Small hand-written SVG charts for the HTML report (no Qt, no plotting library)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)


@dataclass
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = ""
    points: bool = True  # draw markers
    line: bool = False  # join the points
    dashed: bool = False
    labels: Sequence[str] = field(default_factory=tuple)  # a text beside each marker


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


@dataclass(frozen=True)
class _Frame:
    """The plot area (pixels) and the data range it shows, padded a little on every side."""

    left: int
    top: int
    pw: int
    ph: int
    x0: float
    x1: float
    y0: float
    y1: float

    @classmethod
    def around(
        cls, xs: Sequence[float], ys: Sequence[float], left: int, top: int, pw: int, ph: int
    ) -> _Frame:
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        padx = (x1 - x0) * 0.06 or abs(x0) * 0.1 or 1.0
        pady = (y1 - y0) * 0.08 or abs(y0) * 0.1 or 1.0
        return cls(left, top, pw, ph, x0 - padx, x1 + padx, y0 - pady, y1 + pady)

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.pw

    def py(self, y: float) -> float:
        return self.top + self.ph - (y - self.y0) / (self.y1 - self.y0) * self.ph


def scatter_svg(
    series: Sequence[Series],
    title: str,
    x_label: str,
    y_label: str,
    vlines: Sequence[tuple[float, str]] = (),
    width: int = 720,
    height: int = 420,
    log_y: bool = False,
) -> str:
    """An SVG scatter / line chart with axes, ticks, a legend and labelled vertical lines.

    With ``log_y`` the y axis is logarithmic (points at or below zero are left out).
    """
    if log_y:
        series = _log_y(series)
    left, right, top, bottom = 70, 20, 40, 55
    xs = [x for s in series for x in s.xs if _finite(x)] + [x for x, _ in vlines if _finite(x)]
    ys = [y for s in series for y in s.ys if _finite(y)]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12" '
        f'role="img" aria-label="{escape(title)}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" '
        f'font-weight="bold">{escape(title)}</text>',
    ]
    if not xs or not ys:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            f'fill="#666">No measurements to plot yet</text></svg>'
        )
        return "".join(parts)
    frame = _Frame.around(xs, ys, left, top, width - left - right, height - top - bottom)
    parts += _axes(frame, x_label, y_label, height, log_y)
    parts += _vlines(frame, vlines)
    for i, s in enumerate(series):
        parts += _marks(frame, s, s.color or PALETTE[i % len(PALETTE)])
    parts += _legend(frame, series)
    parts.append("</svg>")
    return "".join(parts)


def _log_y(series: Sequence[Series]) -> list[Series]:
    """The series with log10 of their y values; points at or below zero are left out."""
    return [
        Series(
            s.name,
            [x for x, y in zip(s.xs, s.ys, strict=False) if _finite(y) and y > 0],
            [math.log10(y) for y in s.ys if _finite(y) and y > 0],
            s.color,
            s.points,
            s.line,
            s.dashed,
            [lab for lab, y in zip(s.labels, s.ys, strict=False) if _finite(y) and y > 0],
        )
        for s in series
    ]


def _axes(f: _Frame, x_label: str, y_label: str, height: int, log_y: bool) -> list[str]:
    """The plot area's border, the grid lines with their tick labels and the axis titles."""
    left, top, pw, ph = f.left, f.top, f.pw, f.ph
    parts = [f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in _ticks(f.x0, f.x1):
        parts.append(
            f'<line x1="{f.px(t):.1f}" y1="{top}" x2="{f.px(t):.1f}" y2="{top + ph}" '
            f'stroke="#eee"/><text x="{f.px(t):.1f}" y="{top + ph + 16}" '
            f'text-anchor="middle">{_fmt(t)}</text>'
        )
    y_ticks = (
        [float(k) for k in range(math.ceil(f.y0), math.floor(f.y1) + 1)]
        if log_y
        else _ticks(f.y0, f.y1)
    )
    if log_y and len(y_ticks) < 2:
        y_ticks = _ticks(f.y0, f.y1)
    for t in y_ticks:
        label = _fmt(10**t) if log_y else _fmt(t)
        parts.append(
            f'<line x1="{left}" y1="{f.py(t):.1f}" x2="{left + pw}" y2="{f.py(t):.1f}" '
            f'stroke="#eee"/><text x="{left - 6}" y="{f.py(t) + 4:.1f}" '
            f'text-anchor="end">{label}</text>'
        )
    parts.append(
        f'<text x="{left + pw / 2}" y="{height - 12}" text-anchor="middle">{escape(x_label)}</text>'
    )
    parts.append(
        f'<text transform="translate(16 {top + ph / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return parts


def _vlines(f: _Frame, vlines: Sequence[tuple[float, str]]) -> list[str]:
    """Dashed red vertical lines at the given x values, each with its label."""
    return [
        f'<line class="vline" x1="{f.px(x):.1f}" y1="{f.top}" x2="{f.px(x):.1f}" '
        f'y2="{f.top + f.ph}" stroke="#c00" stroke-dasharray="6 4"/>'
        f'<text x="{f.px(x) + 4:.1f}" y="{f.top + f.ph - 8}" text-anchor="start" '
        f'fill="#c00">{escape(label)}</text>'
        for x, label in vlines
        if _finite(x)
    ]


def _marks(f: _Frame, s: Series, color: str) -> list[str]:
    """One series: its line, its markers and the labels beside them."""
    parts = []
    pts = [
        (f.px(x), f.py(y)) for x, y in zip(s.xs, s.ys, strict=False) if _finite(x) and _finite(y)
    ]
    if s.line and len(pts) > 1:
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        parts.append(
            f'<polyline class="series" points="{path}" fill="none" '
            f'stroke="{color}" stroke-width="1.8"{dash}/>'
        )
    if s.points:
        order = sorted(range(len(pts)), key=lambda k: pts[k][0])
        below = {k for n, k in enumerate(order) if n % 2}  # neighbours alternate sides
        for j, (x, y) in enumerate(pts):
            parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"/>')
            if j < len(s.labels) and s.labels[j]:
                dy = 14 if j in below else -6
                parts.append(
                    f'<text x="{x + 6:.1f}" y="{y + dy:.1f}" font-size="10" '
                    f'fill="#333">{escape(s.labels[j])}</text>'
                )
    return parts


def _legend(f: _Frame, series: Sequence[Series]) -> list[str]:
    """A colour swatch and the name of every named series, top right inside the plot."""
    parts = []
    legend_y = f.top + 8
    x = f.left + f.pw
    for i, s in enumerate(s for s in series if s.name):
        color = s.color or PALETTE[series.index(s) % len(PALETTE)]
        parts.append(
            f'<rect x="{x - 170}" y="{legend_y + i * 16}" width="10" '
            f'height="10" fill="{color}"/><text x="{x - 155}" '
            f'y="{legend_y + i * 16 + 9}">{escape(s.name[:24])}</text>'
        )
    return parts


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(float(v))
