"""The fit table: one row per quant type and recipe, memory per device, verdict, predicted speed."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QModelIndex, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetrics,
    QHelpEvent,
    QStandardItem,
    QStandardItemModel,
)
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QStyle, QTableView, QToolTip, QWidget

from qtapp.core.app.glossary import explain, explain_quant
from qtapp.core.fit.devices import Device, overhead_text
from qtapp.core.fit.measured_speed import speed_text, speed_tooltip
from qtapp.core.fit.plan import Plan, PlanRow
from qtapp.core.fit.quality_order import METRIC_NAMES
from qtapp.ui.fit.model_card import human_bytes

VERDICT_TEXT = {"fits": "Fits on GPU", "partial": "Partial offload", "no": "Does not fit"}
VERDICT_COLOUR = {"fits": "#2e9d57", "partial": "#d98b00", "no": "#d64545"}
CPU_VERDICT = {"fits": "Fits in RAM", "partial": "Partial", "no": "Does not fit"}
_ALIGN = Qt.ItemDataRole.TextAlignmentRole
#: marks a type the user measured (the quality order uses the measurement); user recipes: italic
MEASURED_MARK = "◆"


def _gib(b: float) -> str:
    return f"{b / 1024**3:.2f}" if b >= 0.1 * 1024**3 else f"{b / 1024**3:.3f}"


class FitTableModel(QStandardItemModel):
    """The plan as a table of items. Cell texts and styles are computed once per plan in
    :meth:`set_plan` and set on items, so a repaint reads them in C++ (a Python ``data()`` was
    called ~3,700 times per repaint of this table); a new plan of the same rows sets only the
    cells whose text or style changed, so a context or margin change repaints little. Tooltips
    are made when asked (:meth:`tooltip`, shown by :class:`FitTable`)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.plan: Plan | None = None
        self.rows: list[PlanRow] = []
        self.devices: list[str] = []
        self.recommended: str | None = None
        self._headers: list[str] = self.headers()
        self._texts: list[list[str]] = []
        self._styles: list[dict[int, tuple[QBrush | None, bool]]] = []  # col -> (colour, bold)
        self._bold = QFont()
        self._bold.setBold(True)
        self._italic = QFont()
        self._italic.setItalic(True)
        self._bold_italic = QFont(self._bold)
        self._bold_italic.setItalic(True)
        self._brushes = {k: QBrush(QColor(v)) for k, v in VERDICT_COLOUR.items()}
        self._left = int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
        self._right = int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight)
        self._set_headers()

    def clear(self) -> None:
        """No plan: no rows (after a model failed to open, the old one's rows would mislead)."""
        self.plan, self.rows, self.devices, self.recommended = None, [], [], None
        self._texts, self._styles = [], []
        self._rebuild()

    # columns: Type, bpw, Weights, <device totals>, KV, Compute, Layers, Verdict, pp, tg, Figures
    def headers(self) -> list[str]:
        return (
            ["Type", "bpw", "Weights"]
            + list(self.devices)
            + ["KV", "Compute", "Layers", "Verdict", "pp t/s", "tg t/s", "Figures"]
        )

    def set_plan(self, plan: Plan) -> str:
        """Show ``plan``. Returns what changed: ``"reset"`` (other rows), ``"columns"`` (another
        number of devices: their columns inserted or removed) or ``"cells"`` (texts only)."""
        devices = [d.name for d in plan.devices]
        if not self.rows or [r.type for r in plan.rows] != [r.type for r in self.rows]:
            kind = "reset"
        elif len(devices) != len(self.devices):
            kind = "columns"
        else:
            kind = "cells"
        old_texts, old_styles, old_devices = self._texts, self._styles, self.devices
        self.plan, self.rows, self.devices = plan, plan.rows, devices
        self.recommended = plan.recommended
        n_cols = len(self.headers())
        self._texts = [[self._cell(r, c) for c in range(n_cols)] for r in self.rows]
        self._styles = [self._row_styles(r) for r in self.rows]
        if kind == "cells":
            if devices != old_devices:  # same count, other names
                self._set_headers()
            self._set_changed_cells(old_texts, old_styles)
        else:  # other rows, or other device columns: the items anew, in one reset
            self._rebuild()
        return kind

    def _set_headers(self) -> None:
        self._headers = self.headers()
        self.setColumnCount(len(self._headers))
        for col, name in enumerate(self._headers):
            item = QStandardItem(name)
            item.setToolTip(self._header_tooltip(name))
            self.setHorizontalHeaderItem(col, item)

    def _rebuild(self) -> None:
        """Every item from ``_texts`` and ``_styles``: one model reset for the views."""
        self.beginResetModel()
        self.blockSignals(True)
        try:
            self.setRowCount(0)
            self._set_headers()
            for r, texts in enumerate(self._texts):
                items = []
                for col, text in enumerate(texts):
                    item = QStandardItem(text)
                    item.setEditable(False)
                    item.setData(self._alignment(col), _ALIGN)
                    item.setData(self.rows[r].type, Qt.ItemDataRole.UserRole)
                    if col in self._styles[r] or (col == 0 and self.rows[r].user_recipe):
                        self._style_item(item, r, col)  # a new item has no style to clear
                    items.append(item)
                self.appendRow(items)
        finally:
            self.blockSignals(False)
            self.endResetModel()

    def _alignment(self, col: int) -> int:
        verdict_col = 3 + len(self.devices) + 3
        return self._left if col in (0, verdict_col, verdict_col + 3) else self._right

    def _style_item(self, item: QStandardItem, r: int, col: int) -> None:
        style = self._styles[r].get(col)
        item.setData(style[0] if style else None, Qt.ItemDataRole.ForegroundRole)
        if col == 0 and self.rows[r].user_recipe:
            font: QFont | None = self._bold_italic if style and style[1] else self._italic
        else:
            font = self._bold if style and style[1] else None
        item.setData(font, Qt.ItemDataRole.FontRole)

    def _set_changed_cells(
        self, old_texts: list[list[str]], old_styles: list[dict[int, tuple[QBrush | None, bool]]]
    ) -> None:
        """Set the items whose text or style changed (each signals its own cell)."""
        for r, (was, now) in enumerate(zip(old_texts, self._texts, strict=True)):
            for col, text in enumerate(now):
                style_changed = old_styles[r].get(col) != self._styles[r].get(col)
                if was[col] == text and not style_changed:
                    continue
                item = self.item(r, col)
                if was[col] != text:
                    item.setText(text)
                if style_changed:
                    self._style_item(item, r, col)

    def column_texts(self) -> dict[str, set[str]]:
        """Header -> the distinct texts of its column (for deciding when to widen it)."""
        return {h: {t[c] for t in self._texts} for c, h in enumerate(self._headers)}

    def _header_tooltip(self, name: str) -> str:
        glossary = {
            "bpw": "bpw",
            "KV": "kv_cache",
            "Compute": "compute_buffer",
            "Layers": "offload",
            "pp t/s": "pp",
            "tg t/s": "tg",
        }
        plain = explain(glossary[name]) + "\n\n" if name in glossary else ""
        if name.endswith("t/s"):
            return plain + (
                "Tokens/s at the chosen context: with that many tokens already in the KV "
                "cache (llama-bench -d), as a long conversation runs. Plain = measured on this "
                "hardware (Evaluate with speed); ~ = predicted, calibrated by your measurements "
                "of other types; * = predicted (memory bandwidth / compute model)."
            )
        if name in ("Weights", "KV", "Compute") or name in self.devices:
            return plain + f"{name}, GiB (hover a device cell for its breakdown)"
        if name == "Layers":
            return plain + "Layers on the GPUs (n_gpu_layers; the output layer counts as one)"
        if plain:
            return plain.strip()
        if name == "Figures":
            return (
                "exact: llama.cpp's own sizes (weights from its dry-run quantization, KV"
                " cache and compute from its no-alloc load); exact weights: the KV / compute"
                " load is still running; estimate: instant figures while those run."
            )
        return ""

    def _cell(self, row: PlanRow, col: int) -> str:
        n_dev = len(self.devices)
        if col == 0:
            name = "current file" if row.type == "current" else row.type
            if row.needs_imatrix:
                name += " (imatrix)"
            if row.measured_quality is not None:
                name += " " + MEASURED_MARK
            if row.type == self.recommended:
                name = "★ " + name
            return name
        if col == 1:
            return f"{row.bpw:.2f}"
        if col == 2:
            return _gib(row.weights_bytes)
        if 3 <= col < 3 + n_dev:
            return _gib(row.devices[col - 3].total_bytes)
        col -= 3 + n_dev
        if col == 0:
            return _gib(sum(d.kv_bytes for d in row.devices))
        if col == 1:
            return _gib(sum(d.compute_bytes for d in row.devices))
        if col == 2:
            return "CPU" if not any(d != "CPU" for d in self.devices) else str(row.n_gpu_layers)
        if col == 3:
            gpu_less = all(d == "CPU" for d in self.devices)
            return (CPU_VERDICT if gpu_less else VERDICT_TEXT)[row.verdict]
        if col in (4, 5):
            return speed_text(row, "pp" if col == 4 else "tg")
        if col == 6:
            if row.weights_exact and row.memory_exact:
                return "exact"
            if row.weights_exact:
                return "exact weights"
            return "estimate"
        return ""

    def _tooltip(self, row: PlanRow, col: int) -> str | None:
        n_dev = len(self.devices)
        if 3 <= col < 3 + n_dev:
            d = row.devices[col - 3]
            lines = [
                f"{d.device}: {human_bytes(d.total_bytes)}",
                f"  weights {human_bytes(d.weights_bytes)}",
                f"  KV cache {human_bytes(d.kv_bytes)}",
                f"  compute {human_bytes(d.compute_bytes)}",
            ]
            if d.overhead_bytes:
                what = "llama.cpp's own tables" if d.device == "CPU" else "CUDA context + libraries"
                lines.append(f"  {what} {human_bytes(d.overhead_bytes)}")
                gpu = next((g for g in self._plan_devices() if g.name == d.device), None)
                if gpu is not None and gpu.is_gpu:
                    lines.append(f"    ({gpu.overhead_source or 'measured on an H200'})")
            if d.copies_bytes:
                lines.append(f"  of the weights, repacked copies {human_bytes(d.copies_bytes)}")
            if d.load_cache_bytes:
                lines.append(f"  + read once while loading {human_bytes(d.load_cache_bytes)}")
            if d.budget_bytes:
                lines.append(f"usable: {human_bytes(d.budget_bytes)}")
            return "\n".join(lines)
        if col == 3 + n_dev + 2 and row.llama_args:
            return f"llama.cpp flags for this placement: {row.llama_args}"
        if col == 3 + n_dev + 6:
            return (
                "Weights: llama.cpp's dry-run quantization. KV cache and CPU compute: "
                "llama.cpp's no-alloc load. GPU compute buffers: scaled from llama.cpp's "
                f"CPU figure; {overhead_text(self._plan_devices())}."
            )
        if col == 0:
            return self._type_tooltip(row)
        if col == 3 + n_dev + 3 and row.note:
            return row.note
        if col in (3 + n_dev + 4, 3 + n_dev + 5):
            return speed_tooltip(row, "pp" if col == 3 + n_dev + 4 else "tg")
        return None

    def _plan_devices(self) -> list[Device]:
        return list(self.plan.devices) if self.plan is not None else []

    def _type_tooltip(self, row: PlanRow) -> str | None:
        lines = ["The file as it is" if row.type == "current" else row.type]
        if row.type != "current" and explain_quant(row.type):
            lines.append(explain_quant(row.type))
        if row.needs_imatrix:
            lines.append("llama.cpp needs an importance matrix (imatrix) for this type.")
        if row.user_recipe:
            lines.append(
                "One of your saved recipes (shown in italics), sized by llama.cpp like the "
                "built-in ones."
            )
        quality = self.plan.quality if self.plan is not None else None
        if row.measured_quality is not None and quality is not None:
            metric = METRIC_NAMES.get(quality.metric, quality.metric)
            lines.append(
                f"Your evaluation measured {metric} {row.measured_quality:.4g}; the "
                "recommendation ranks measured types by it (lower is better)."
            )
        return "\n".join(lines)

    def _row_styles(self, row: PlanRow) -> dict[int, tuple[QBrush | None, bool]]:
        n_dev = len(self.devices)
        verdict_col = 3 + n_dev + 3
        styles: dict[int, tuple[QBrush | None, bool]] = {
            verdict_col: (self._brushes[row.verdict], True)
        }
        if row.type == self.recommended:
            styles[0] = (None, True)
        for i, d in enumerate(row.devices[:n_dev]):
            if d.budget_bytes and d.total_bytes > d.budget_bytes:
                styles[3 + i] = (self._brushes["no"], False)
        if row.weights_exact and row.memory_exact:
            styles[verdict_col + 3] = (self._brushes["fits"], False)
        for col, which in ((verdict_col + 1, "pp"), (verdict_col + 2, "tg")):
            if row.speed_source_of(which) == "measured":
                styles[col] = (None, True)  # bold: the user's own measurement
        return styles

    def tooltip(self, r: int, col: int) -> str | None:
        """The tooltip of a cell, made when the user points at it."""
        if not (0 <= r < len(self.rows) and 0 <= col < len(self._headers)):
            return None
        return self._tooltip(self.rows[r], col)


class FitTable(QTableView):
    """The table view; ``row_selected(PlanRow)`` when the current row changes."""

    row_selected = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model_ = FitTableModel(self)
        self.setModel(self.model_)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(24)
        self.horizontalHeader().setHighlightSections(False)
        # fitted to the contents when they grow, not on every update: ResizeToContents would
        # measure every cell of every column at each context-slider step
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.horizontalHeader().setStretchLastSection(True)
        self.setWordWrap(False)
        self.follow_recommendation = True  # until the user picks a row
        self._fitted_widths: dict[str, int] = {}  # header -> widest text when last fitted
        self._advances: dict[str, int] = {}  # text -> its width, bold
        self._metrics = QFontMetrics(self.font())
        self.selectionModel().currentRowChanged.connect(self._on_current)

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802 - Qt override
        """Cell tooltips are made when the user points at a cell (see FitTableModel)."""
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            index = self.indexAt(event.pos())
            text = self.model_.tooltip(index.row(), index.column()) if index.isValid() else None
            if text:
                QToolTip.showText(event.globalPos(), text, self.viewport(), self.visualRect(index))
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().viewportEvent(event)

    def set_plan(self, plan: Plan) -> None:
        keep = [] if self.follow_recommendation else self.selected_types()
        current = self.current_type()
        change = self.model_.set_plan(plan)
        target = current
        if current is None or self.follow_recommendation:
            target = plan.recommended or current
        if target is not None and (change != "cells" or target != current):
            self.select_type(target, keep)
        self._fit_columns(change == "reset")
        self.row_selected.emit(self.current_row())

    def clear(self) -> None:
        self.model_.clear()
        self.follow_recommendation = True
        self.row_selected.emit(None)

    def _fit_columns(self, reset: bool) -> None:
        """Widen new columns and those whose widest text grew; all of them after a reset."""
        widths = self._text_widths(reset)
        last = len(widths) - 1
        for col, (name, w) in enumerate(widths.items()):
            was = self._fitted_widths.get(name, -1)
            # the last column also shrinks ("estimate" -> "exact"): it stretches anyway,
            # and a stale width there would leave a horizontal scroll bar
            if reset or w > was or (col == last and w != was):
                self._set_width(col, w)
        self._squeeze_type_column()
        last = len(widths) - 1
        self._fitted_widths = {
            name: w if reset or col == last else max(w, self._fitted_widths.get(name, -1))
            for col, (name, w) in enumerate(widths.items())
        }

    def _set_width(self, col: int, text_width: int) -> None:
        """What ``resizeColumnToContents`` gives, from the cached text widths: Qt's own asks
        every cell's delegate to lay out its text (~600 cells, tens of ms on the GUI thread)."""
        style = self.style()
        pad = 2 * (style.pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, self) + 1)
        pad += 1 if self.showGrid() else 0
        header = self.horizontalHeader().sectionSizeHint(col)
        self.setColumnWidth(col, max(text_width + pad, header))

    def _squeeze_type_column(self) -> None:
        """When the columns overflow by a little, narrow the Type column (its long names elide,
        with the full name in the tooltip) rather than show a horizontal scroll bar."""
        n = self.model_.columnCount()
        over = sum(self.columnWidth(c) for c in range(n)) - self.viewport().width()
        if 0 < over <= 60 and self.columnWidth(0) - over >= 90:
            self.setColumnWidth(0, self.columnWidth(0) - over)

    def _text_widths(self, reset: bool) -> dict[str, int]:
        """Header -> pixel width of its widest text, measured bold (an upper bound) and cached."""
        if reset or len(self._advances) > 20_000:
            self._advances = {}
            bold = self.font()
            bold.setBold(True)
            self._metrics = QFontMetrics(bold)
        advances, metrics = self._advances, self._metrics
        widths: dict[str, int] = {}
        for name, texts in self.model_.column_texts().items():
            widest = 0
            for text in texts:
                w = advances.get(text)
                if w is None:
                    w = advances[text] = metrics.horizontalAdvance(text)
                widest = max(widest, w)
            widths[name] = widest
        return widths

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.follow_recommendation = False  # programmatic changes block this signal
        self.row_selected.emit(self.current_row())

    def current_row(self) -> PlanRow | None:
        idx = self.currentIndex()
        if not idx.isValid() or idx.row() >= len(self.model_.rows):
            return None
        return self.model_.rows[idx.row()]

    def current_type(self) -> str | None:
        row = self.current_row()
        return row.type if row else None

    def selected_types(self) -> list[str]:
        rows = sorted({i.row() for i in self.selectionModel().selectedRows()})
        return [self.model_.rows[r].type for r in rows if r < len(self.model_.rows)]

    def select_type(self, name: str, also: list[str] | None = None) -> None:
        types = [r.type for r in self.model_.rows]
        if name not in types:
            return
        sm = self.selectionModel()
        sm.blockSignals(True)
        self.clearSelection()
        for other in also or []:
            if other in types:
                self.selectRow(types.index(other))
        self.setCurrentIndex(self.model_.index(types.index(name), 0))
        self.selectRow(types.index(name))
        sm.blockSignals(False)
