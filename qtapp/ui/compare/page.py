"""The Compare page: every stored run in a sortable table, with quality / speed / curve charts,
a VRAM budget line and a recommendation per model at that budget."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.errors import QuantLensError
from qtapp.core.results.comparison import (
    QUALITY_METRICS,
    Budget,
    CompareRow,
    build_rows,
    parse_budget,
)
from qtapp.core.results.recovery import StartupRecovery, recover_at_start
from qtapp.core.results.store import ResultsStore, RunRecord
from qtapp.ui.common.context import AppContext
from qtapp.ui.compare.budget import RecommendationPanel, detected_budget, margin_bytes
from qtapp.ui.compare.charts import CurvesChart, QualityChart, SpeedChart
from qtapp.ui.compare.context_speed import ContextSpeedTab
from qtapp.ui.compare.export import ExportButton
from qtapp.ui.compare.table import CompareTable
from qtapp.ui.compare.versus_panel import VersusPanel

log = logging.getLogger(__name__)
GIB = 1024**3
#: the "Show" filter: (title, kinds shown; empty = all)
KIND_FILTERS: list[tuple[str, tuple[str, ...]]] = [
    ("Quants and evaluations", ("eval", "quantize", "tasks")),
    ("Evaluations", ("eval",)),
    ("Task accuracy", ("tasks",)),
    ("Quantizations", ("quantize",)),
    ("Plans", ("plan",)),
    ("All runs", ()),
]


class Page(QWidget):
    key = "compare"
    title = "Compare"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.store: ResultsStore | None = None
        self.runs: list[RunRecord] = []
        self.rows: list[CompareRow] = []
        self._all_runs: list[RunRecord] = []
        self._all_rows: list[CompareRow] = []
        self.recovery: StartupRecovery | None = None
        self._margin = margin_bytes()
        self._stale: set[int] = set()  # chart tabs to redraw when next shown
        # the shown tab's chart is drawn in the turn after the table and the texts: together
        # they took one turn of 40-50 ms on a quiet core (the chart's items are made in Python)
        self._chart_timer = QTimer(self)
        self._chart_timer.setSingleShot(True)
        self._chart_timer.setInterval(0)
        self._chart_timer.timeout.connect(lambda: self._draw_tab(self.tabs.currentIndex(), True))
        self._build()
        self._open_store()
        self._refresh_timer = QTimer(self)  # coalesces bursts of results_changed
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(120)
        self._refresh_timer.timeout.connect(self._refresh_when_seen)
        self._refresh_pending = False
        ctx.results_changed.connect(self._refresh_timer.start)
        self._seen_budget: Budget | None = None
        ctx.hardware_changed.connect(self._on_hardware)
        self.refresh()

    # -- layout -----------------------------------------------------------------------------------
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(16, 12, 16, 8)
        heading = QLabel("<b style='font-size:16pt'>Compare</b>")
        self.summary = QLabel()
        self.summary.setStyleSheet("color:#555")
        top = QHBoxLayout()
        top.addWidget(heading)
        top.addSpacing(12)
        top.addWidget(self.summary, 1)
        root.addLayout(top)

        bar = QHBoxLayout()
        self.model_box = QComboBox(minimumContentsLength=18)
        self.model_box.setToolTip("Show the runs of one model, or all")
        self.kind_box = QComboBox()
        for title, kinds in KIND_FILTERS:
            self.kind_box.addItem(title, kinds)
        self.metric_box = QComboBox()
        for key, (_m, name) in QUALITY_METRICS.items():
            self.metric_box.addItem(f"Quality: {name}", key)
        self.metric_box.setToolTip("What the quality chart and the recommendation use")
        self.budget_edit = QLineEdit(placeholderText="what if, e.g. 2x48GiB")
        self.budget_edit.setToolTip(
            "GPU memory to plan for: N x size per GPU. Empty: this PC's "
            "free VRAM minus the margin from Settings."
        )
        self.budget_edit.setMaximumWidth(170)
        self.budget_note = QLabel()
        for label, widget in (
            ("Model", self.model_box),
            ("Show", self.kind_box),
            (None, self.metric_box),
            ("VRAM budget", self.budget_edit),
        ):
            if label:
                bar.addWidget(QLabel(label))
            bar.addWidget(widget)
            bar.addSpacing(6)
        bar.addWidget(self.budget_note, 1)
        root.addLayout(bar)

        self.table = CompareTable()
        self.quality_chart = QualityChart()
        self._speed_chart: SpeedChart | None = None  # built when first needed (~15 ms each)
        self._curves_chart: CurvesChart | None = None
        self.series_box = QComboBox()
        self.series_box.setToolTip("Which stored curve to overlay")
        curves_tab = QWidget()
        curves_layout = QVBoxLayout(curves_tab)
        curves_layout.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Curve"))
        row.addWidget(self.series_box)
        row.addStretch(1)
        curves_layout.addLayout(row)
        self._curves_layout = curves_layout
        speed_tab = QWidget()
        self._speed_layout = QVBoxLayout(speed_tab)
        self._speed_layout.setContentsMargins(0, 0, 0, 0)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.quality_chart, "Quality vs size")
        self.tabs.addTab(speed_tab, "Speed vs size")
        self.tabs.addTab(curves_tab, "Curves")
        self.context_speed = ContextSpeedTab()
        self.tabs.addTab(self.context_speed, "Speed at your context")
        self.recommendations = RecommendationPanel()
        self.versus = VersusPanel()
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.recommendations)
        side_layout.addWidget(self.versus)
        side_layout.addStretch(1)
        side_scroll = QScrollArea()
        side_scroll.setWidgetResizable(True)
        side_scroll.setFrameShape(QFrame.Shape.NoFrame)
        side_scroll.setWidget(side)
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(self.tabs)
        lower.addWidget(side_scroll)
        lower.setStretchFactor(0, 4)
        lower.setStretchFactor(1, 1)
        lower.setSizes([900, 280])
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(lower)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([300, 440])
        root.addWidget(split, 1)

        actions = QHBoxLayout()
        self.rename_button = QPushButton("Rename…")
        self.note_button = QPushButton("Annotate…")
        self.delete_button = QPushButton("Delete")
        self.export_button = ExportButton(self)
        for b in (self.rename_button, self.note_button, self.delete_button):
            actions.addWidget(b)
        actions.addStretch(1)
        self.data_label = QLabel()
        self.data_label.setStyleSheet("color:#666")
        self.data_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        actions.addWidget(self.data_label)
        actions.addSpacing(12)
        actions.addWidget(self.export_button)
        root.addLayout(actions)

        self.model_box.currentIndexChanged.connect(lambda _i: self.refresh())
        self.kind_box.currentIndexChanged.connect(lambda _i: self.refresh())
        self.metric_box.currentIndexChanged.connect(lambda _i: self._redraw())
        self.metric_box.activated.connect(lambda _i: setattr(self, "_metric_chosen", True))
        self.budget_edit.editingFinished.connect(self.refresh)
        self.series_box.currentIndexChanged.connect(lambda _i: self._draw_curves())
        self.tabs.currentChanged.connect(self._draw_tab)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self.quality_chart.point_clicked.connect(lambda rid: self.table.select_runs([rid]))
        self.rename_button.clicked.connect(lambda: self.rename_selected())
        self.note_button.clicked.connect(lambda: self.annotate_selected())
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self._on_selection()

    # -- data -------------------------------------------------------------------------------------
    def _open_store(self) -> None:
        try:
            self.store = ResultsStore.open(self.ctx.paths.results_db)
        except (QuantLensError, OSError) as exc:
            self.summary.setText(f"<span style='color:#b00020'>Results unavailable: {exc}</span>")
            log.error("cannot open the results store: %s", exc)
            return
        self.data_label.setText(f"Data: {self.store.path}")
        self.data_label.setToolTip("The results database (SQLite); back it up or delete it here")
        try:
            self.recovery = recover_at_start(self.store)
        except Exception as exc:  # noqa: BLE001 - recovery must never stop the window opening
            log.warning("start-up recovery failed: %s", exc)
            return
        message = self.recovery.message()
        if self.store.recovered_from is not None:
            message = (
                f"The results database was damaged and is kept as "
                f"{self.store.recovered_from.name}; a new one was started. {message}"
            )
        if message:
            QTimer.singleShot(0, lambda: self.ctx.status.emit(message))

    def budget(self) -> tuple[Budget | None, str]:
        """The budget in force and a line that says where it came from (or what is wrong)."""
        text = self.budget_edit.text().strip()
        if text:
            try:
                b = parse_budget(text, self._margin)
                return b, f"{b.usable_gib:.1f} GiB usable ({self._margin / GIB:.1f} GiB margin/GPU)"
            except ValueError as exc:
                return None, f"<span style='color:#b00020'>{exc}</span>"
        b = detected_budget(self.ctx.hardware, self._margin)
        if b is None:
            return None, "no GPU detected: type a budget to check fits"
        return b, f"{b.name}: {b.usable_gib:.1f} GiB usable"

    def _on_hardware(self, report: object) -> None:
        """The hardware view polls about once a second: redraw only when free VRAM moved."""
        if self.budget_edit.text().strip():
            return
        new = detected_budget(report, self._margin)
        old = self._seen_budget
        moved = (new is None) != (old is None) or (
            new is not None
            and old is not None
            and abs(new.usable_bytes - old.usable_bytes) > 256 * 1024**2
        )
        if moved:
            self.refresh()

    def _pick_measured_metric(self) -> None:
        """Until the user picks one: bits per byte when runs of several models have it (the one
        figure that compares them), else mean KLD when any run has it, else PPL."""
        if getattr(self, "_metric_chosen", False):
            return
        has = {key: any(r.quality(key) is not None for r in self.rows) for key in ("kld", "ppl")}
        wanted = "kld" if has["kld"] or not has["ppl"] else "ppl"
        if len({r.model for r in self.rows if r.bpb is not None}) > 1:
            wanted = "bpb"
        index = self.metric_box.findData(wanted)
        if index >= 0 and index != self.metric_box.currentIndex():
            self.metric_box.blockSignals(True)  # refresh() redraws right after
            self.metric_box.setCurrentIndex(index)
            self.metric_box.blockSignals(False)

    def _refresh_when_seen(self) -> None:
        """New results: redraw now if the page is on screen, else when it is next shown (a
        hidden page redrawing its charts after every finished job only stalls the window)."""
        if self.isVisible():
            self.refresh()
        else:
            self._refresh_pending = True

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self._refresh_pending:
            self.refresh()

    def refresh(self) -> None:
        """Re-read the store and redraw everything."""
        self._refresh_pending = False
        if self.store is None:
            return
        all_runs = self.store.list_runs()
        self._fill_models(sorted({r.model_name for r in all_runs}))
        model = self.model_box.currentData()
        kinds = self.kind_box.currentData() or ()
        budget, note = self.budget()
        self.budget_note.setText(note)
        self._seen_budget = None if self.budget_edit.text().strip() else budget
        # rows are built from every run so ΔPPL finds the base and speeds find their plan
        rows = build_rows(all_runs, [budget] if budget else [])
        keep = {
            r.id
            for r in all_runs
            if (not model or r.model_name == model) and (not kinds or r.kind in kinds)
        }
        self.runs = [r for r in all_runs if r.id in keep]
        self._all_runs, self._all_rows = all_runs, rows  # model vs model looks at every model
        self.rows = [r for r in rows if r.run_id in keep]
        self.table.set_rows(self.rows)
        self._pick_measured_metric()
        n_models = len({r.model for r in self.rows})
        self.summary.setText(
            f"{len(self.rows)} runs of {n_models} model{'' if n_models == 1 else 's'}"
        )
        self._redraw()

    def _fill_models(self, models: list[str]) -> None:
        current = self.model_box.currentData()
        wanted = [None, *models]
        if [self.model_box.itemData(i) for i in range(self.model_box.count())] == wanted:
            return
        self.model_box.blockSignals(True)
        self.model_box.clear()
        self.model_box.addItem("All models", None)
        for m in models:
            self.model_box.addItem(m, m)
        self.model_box.setCurrentIndex(max(0, self.model_box.findData(current)))
        self.model_box.blockSignals(False)

    def quality_metric(self) -> str:
        return str(self.metric_box.currentData() or "kld")

    def _redraw(self) -> None:
        budget, _note = self.budget()
        metric = self.quality_metric()
        self.recommendations.show_for(self.rows, metric, budget)
        self.versus.show_for(self._all_runs, self._all_rows, budget)
        # only the visible chart is drawn, in the next turn; the others when their tab is shown
        self._stale = {0, 1, 2, 3}
        self._chart_timer.start()

    @property
    def speed_chart(self) -> SpeedChart:
        if self._speed_chart is None:
            self._speed_chart = SpeedChart()
            self._speed_chart.point_clicked.connect(lambda rid: self.table.select_runs([rid]))
            self._speed_layout.addWidget(self._speed_chart)
        return self._speed_chart

    @property
    def curves_chart(self) -> CurvesChart:
        if self._curves_chart is None:
            self._curves_chart = CurvesChart()
            self._curves_layout.addWidget(self._curves_chart, 1)
        return self._curves_chart

    def chart(self, which: str) -> QualityChart | SpeedChart | CurvesChart:
        """A chart, drawn with the current data (for exports from a tab not yet shown)."""
        index = {"quality": 0, "speed": 1, "curves": 2}[which]
        self._draw_tab(index)
        chart = self._chart_at(index)
        chart.finish_fit()
        return chart

    def _chart_at(self, index: int) -> QualityChart | SpeedChart | CurvesChart:
        """The chart of tab ``index`` (0-2), built if it was not: only that one, as a tuple of
        the three properties built the two others too (a 20-60 ms turn on the first draw)."""
        if index == 1:
            return self.speed_chart
        return self.curves_chart if index == 2 else self.quality_chart

    def _draw_tab(self, index: int, fit_in_next_turn: bool = False) -> None:
        """Draw the tab's chart if its data changed; ``fit_in_next_turn``: in two turns, the
        drawing then its fit (see ``_Chart.fit_in_next_turn``)."""
        if index not in self._stale:
            return
        self._stale.discard(index)
        if fit_in_next_turn and index in (0, 1, 2):
            self._chart_at(index).fit_in_next_turn()
        if index == 0:
            budget, _note = self.budget()
            self.quality_chart.update_rows(
                self.rows,
                self.quality_metric(),
                budget.usable_gib if budget else None,
                budget.name if budget else "",
            )
        elif index == 1:
            self.speed_chart.update_rows(self.rows)
        elif index == 3:
            self.context_speed.show_runs(self.runs)
        else:
            self._draw_curves()

    # -- curves -----------------------------------------------------------------------------------
    def _on_selection(self, *_args: object) -> None:
        ids = self.table.selected_run_ids()
        for b in (self.rename_button, self.note_button):
            b.setEnabled(len(ids) == 1)
        self.delete_button.setEnabled(bool(ids))
        self._stale.add(2)
        self._draw_tab(self.tabs.currentIndex())

    def _draw_curves(self) -> None:
        if self.store is None:
            return
        ids = self.table.selected_run_ids()
        curves = self.store.curves_many(ids)
        names = sorted({s for per in curves.values() for s in per})
        current = self.series_box.currentText()
        if [self.series_box.itemText(i) for i in range(self.series_box.count())] != names:
            self.series_box.blockSignals(True)
            self.series_box.clear()
            self.series_box.addItems(names)
            preferred = [current, "ppl", "kld"]
            self.series_box.setCurrentText(next((n for n in preferred if n in names), ""))
            self.series_box.blockSignals(False)
        series = self.series_box.currentText()
        by_id = {r.run_id: r for r in self.rows}
        pairs = [
            (by_id[i], curves[i][series]) for i in ids if i in by_id and series in curves.get(i, {})
        ]
        self.curves_chart.update_curves(pairs, series)

    # -- editing ----------------------------------------------------------------------------------
    def rename_selected(self, label: str | None = None) -> bool:
        ids = self.table.selected_run_ids()
        if self.store is None or len(ids) != 1:
            return False
        if label is None:
            old = self.store.get_run(ids[0]).label
            label, ok = QInputDialog.getText(
                self, "Rename run", "Label (quant type or recipe):", text=old
            )
            if not ok:
                return False
        if not label.strip():
            return False
        self.store.rename_run(ids[0], label)
        self.ctx.results_changed.emit()
        return True

    def annotate_selected(self, note: str | None = None) -> bool:
        ids = self.table.selected_run_ids()
        if self.store is None or len(ids) != 1:
            return False
        if note is None:
            old = self.store.get_run(ids[0]).note
            note, ok = QInputDialog.getMultiLineText(self, "Annotate run", "Note:", old)
            if not ok:
                return False
        self.store.annotate_run(ids[0], note)
        self.ctx.results_changed.emit()
        return True

    def delete_selected(self, confirm: bool = True) -> int:
        ids = self.table.selected_run_ids()
        if self.store is None or not ids:
            return 0
        if confirm:
            answer = QMessageBox.question(
                self,
                "Delete runs",
                f"Delete {len(ids)} run{'s' if len(ids) > 1 else ''} and "
                "their curves from the results library? Model files are not touched.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return 0
        for run_id in ids:
            self.store.delete_run(run_id)
        self.table.clearSelection()
        self.refresh()
        self.ctx.results_changed.emit()
        return len(ids)

    def shutdown(self) -> None:
        self._refresh_timer.stop()
        if self.store is not None:
            self.store.close()
            self.store = None
