"""The Compare page's "Model vs model" panel: task accuracy on the same tasks, at the budget."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from PySide6.QtWidgets import QWidget

from qtapp.core.results.comparison import GIB, Budget, CompareRow
from qtapp.core.results.store import RunRecord
from qtapp.core.results.versus import ModelsVerdict, models_verdict, task_scores
from qtapp.ui.compare.budget import InfoPanel
from qtapp.ui.compare.charts import model_colours


class VersusPanel(InfoPanel):
    """Per model the most accurate quant that fits, its 95% interval, and a verdict per pair."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result: ModelsVerdict | None = None

    def show_for(
        self, runs: Sequence[RunRecord], rows: Sequence[CompareRow], budget: Budget | None
    ) -> None:
        need = {r.run_id: None if r.need_gib is None else r.need_gib * GIB for r in rows}
        self.result = v = models_verdict(
            task_scores(runs), need, budget.usable_bytes if budget else None
        )
        head = "<p style='margin:0 0 6px 0'><b>Model vs model</b> (task accuracy)</p>"
        if v is None:
            self.setText(
                head + "<p style='color:#555'>Score two or more models on the same task file "
                "(Evaluate page, Task accuracy, or <code>quantlens tasks</code>) and the "
                "paired verdict appears here.</p>"
            )
            return
        where = f" that fits <b>{escape(budget.name)}</b>" if budget else ""
        colours = model_colours([s.model for s in v.best])
        html = [head, f"<p style='color:#555;margin:0 0 4px 0'>{escape(v.task_set)}; the most "
                f"accurate quant{where} of each model:</p>"]  # fmt: skip
        for s in v.best:
            lo, hi = s.interval()
            dot = f"<span style='color:{colours.get(s.model, '#333')}'>●</span>"
            html.append(
                f"<p style='margin:3px 0'>{dot} {escape(s.model)} at <b>{escape(s.label)}</b>: "
                f"{s.acc:.1f}% (95% CI {lo:.1f} to {hi:.1f}, {s.n} tasks)</p>"
            )
        for model in v.nothing_fits:
            html.append(f"<p style='margin:3px 0;color:#666'>{escape(model)}: no scored quant "
                        "fits the budget</p>")  # fmt: skip
        for _a, _b, d, sentence in v.pairs:
            html.append(
                f"<p style='margin:6px 0 0 0'>{escape(sentence)} "
                f"<span style='color:#666'>(McNemar p = {d.p_value:.3g})</span></p>"
            )
        self.setText("".join(html))
