"""The Compare page's budget helpers and its "best quality that fits" panel."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

from qtapp.core.results.comparison import (
    CROSS_MODEL_NOTE,
    GIB,
    QUALITY_METRICS,
    WITHIN_MODEL_METRICS,
    Budget,
    CompareRow,
    recommend,
)
from qtapp.ui.compare.charts import model_colours


def detected_budget(hardware: object, margin_bytes: int) -> Budget | None:
    """The GPUs this machine has, from ``ctx.hardware`` (free VRAM minus the margin each)."""
    gpus = [g for g in getattr(hardware, "gpus", ()) or () if getattr(g, "free_bytes", None)]
    if not gpus:
        return None
    free = sum(int(g.free_bytes) for g in gpus)
    per = free // len(gpus)
    return Budget(f"this PC ({len(gpus)}x{per / GIB:.0f}GiB free)", len(gpus), per, margin_bytes)


def margin_bytes() -> int:
    """The per-GPU margin from the settings (1 GiB, llama.cpp's --fit default, without them)."""
    try:
        from qtapp.core.app.settings import Settings

        return int(Settings.load().gpu_margin_mib) * 1024**2
    except Exception:  # noqa: BLE001 - the settings module is optional here
        return GIB


class InfoPanel(QLabel):
    """A boxed, selectable rich-text panel beside the Compare page's charts."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.setMinimumWidth(230)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setStyleSheet(
            "QLabel{background:#f6f7f9;border:1px solid #dde;border-radius:4px;padding:8px}"
        )


class RecommendationPanel(InfoPanel):
    """For each model, the best quality among its own runs that fit the budget."""

    def show_for(self, rows: Sequence[CompareRow], metric: str, budget: Budget | None) -> None:
        if budget is None:
            self.setText(
                "<p style='margin:0 0 6px 0'><b>Best quality that fits</b></p>"
                "<p style='color:#555'>No GPU was detected. Type a budget above, e.g. "
                "<b>24GiB</b> or <b>2x48GiB</b>, to see for each model the best quant that "
                "fits it.</p>"
            )
            return
        recs = recommend(rows, metric, budget)
        colours = model_colours([r.model for r in recs])
        where = f"in <b>{budget.name}</b> ({budget.usable_gib:.1f} GiB usable)"
        html = [f"<p style='margin:0 0 6px 0'><b>Best quality that fits</b> {where}</p>"]
        if not recs:
            html.append(
                f"<p style='color:#666'>No {QUALITY_METRICS[metric][1]} measured yet. "
                "Evaluate quants on the Evaluate page and they appear here.</p>"
            )
        for rec in recs:
            dot = f"<span style='color:{colours.get(rec.model, '#333')}'>●</span>"
            html.append(f"<p style='margin:4px 0'>{dot} {escape(rec.text)}</p>")
        if len(recs) > 1 and metric in WITHIN_MODEL_METRICS:
            html.append(f"<p style='color:#8a5a00;margin:6px 0 0 0'>{escape(CROSS_MODEL_NOTE)}</p>")
        self.setText("".join(html))
