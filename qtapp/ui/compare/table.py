"""The Compare table: one row per stored run, sortable by any column (numbers sort as numbers)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor, QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from qtapp.core.app.glossary import explain
from qtapp.core.results.comparison import CompareRow
from qtapp.core.results.report import cell

#: compare columns -> glossary terms
_GLOSSARY = {
    "bpw": "bpw",
    "ppl": "ppl",
    "bpb": "bpb",
    "dppl_pct": "ppl",
    "kld_mean": "kld",
    "kld_p99": "kld",
    "same_top_pct": "same_top",
    "pp_tps": "pp",
    "tg_tps": "tg",
}

#: (field, heading, format, tooltip)
TABLE_COLUMNS: list[tuple[str, str, str, str]] = [
    ("model", "Model", "{}", "general.name of the GGUF, or its file name"),
    ("label", "Quant / recipe", "{}", "quant type or recipe; rename a run to change it"),
    ("kind", "Kind", "{}", "plan, quantize or eval"),
    ("state", "State", "{}", "finished, partial, failed, cancelled or interrupted"),
    ("size_gib", "Size GiB", "{:.3f}", "file size, all shards together"),
    ("bpw", "BPW", "{:.2f}", "bits per weight: tensor data bits over parameters"),
    ("ppl", "PPL", "{:.3f}", "perplexity on the evaluation text (lower is better)"),
    ("bpb", "Bits/byte", "{:.4f}", "bits per byte of the evaluation text: compares tokenizers"),
    ("acc", "Task acc %", "{:.2f}", "task accuracy (HellaSwag, Winogrande, multiple choice)"),
    ("dppl_pct", "ΔPPL %", "{:+.2f}", "PPL change against the base (F16/BF16/F32) of the model"),
    ("kld_mean", "Mean KLD", "{:.4f}", "mean KL divergence from the base model's tokens"),
    ("kld_p99", "99% KLD", "{:.3f}", "99th percentile of the per-token KL divergence"),
    ("same_top_pct", "Same top %", "{:.1f}", "how often the top token equals the base's"),
    ("pp_tps", "pp t/s", "{:.0f}", "prompt processing tokens/s (italic: predicted)"),
    ("tg_tps", "tg t/s", "{:.1f}", "generation tokens/s (italic: predicted)"),
    ("fits", "Fits", "{}", "budgets it fits (GPU memory minus margin); ~ = from file size"),
    ("note", "Note", "{}", "your note (Annotate)"),
]
_SORT_ROLE = Qt.ItemDataRole.UserRole + 1
RUN_ID_ROLE = Qt.ItemDataRole.UserRole + 2
_ALIGN = Qt.ItemDataRole.TextAlignmentRole
_STATE_COLOURS = {
    "failed": "#b00020",
    "interrupted": "#b35c00",
    "cancelled": "#777777",
    "partial": "#8a6d00",
    "running": "#1565c0",
}


def _ppl_text(ppl: float, err: float | None) -> str:
    """PPL ± error with as many digits as the size of the numbers deserves."""
    # an untrained model's huge PPL: only the order of magnitude means anything
    fmt = "{:.3g}" if ppl >= 1e5 else "{:.2f}" if ppl >= 10 else "{:.3f}"
    text = fmt.format(ppl)
    return text if err is None else f"{text} ± {fmt.format(err)}"


class CompareTableModel(QStandardItemModel):
    """The runs as items: every cell's roles are set once per :meth:`set_rows`, so the view,
    the sort proxy and the header read them in C++ (a Python ``data()`` was called ~1,600
    times per repaint of this page, and as often again for every sort)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(TABLE_COLUMNS), parent)
        self.rows: list[CompareRow] = []
        self._italic = QFont()
        self._italic.setItalic(True)
        self._left = int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self._right = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        for col, (key, heading, _fmt, tip) in enumerate(TABLE_COLUMNS):
            header = QStandardItem(heading)
            plain = explain(_GLOSSARY.get(key, ""))  # the plain-words meaning, then the detail
            header.setToolTip(f"{plain}\n\n{tip}" if plain else tip)
            self.setHorizontalHeaderItem(col, header)

    def set_rows(self, rows: Sequence[CompareRow]) -> None:
        self.beginResetModel()
        try:
            self.blockSignals(True)  # one reset, not a signal per item
            self.rows = list(rows)
            self.setRowCount(0)
            for row in self.rows:
                self.appendRow(self._items(row))
        finally:
            self.blockSignals(False)
            self.endResetModel()

    def _items(self, row: CompareRow) -> list[QStandardItem]:
        tip = self._tooltip(row)
        items = []
        for key, _h, fmt, _t in TABLE_COLUMNS:
            predicted = key in ("pp_tps", "tg_tps") and row.speed_source == "predicted"
            text = cell(row, key, fmt)
            if key == "ppl" and row.ppl is not None:
                text = _ppl_text(row.ppl, row.ppl_err)
            if predicted and text:
                text = text.rstrip("*") + " pred."
            if key == "fits" and row.need_is_estimate and text not in ("", "?"):
                text = "~ " + text
            item = QStandardItem(text)
            item.setEditable(False)
            value = getattr(row, key)
            item.setData(
                value if value is not None else (float("inf") if fmt != "{}" else ""), _SORT_ROLE
            )
            item.setData(row.run_id, RUN_ID_ROLE)
            item.setData(self._right if fmt != "{}" else self._left, _ALIGN)
            item.setToolTip(tip)
            if predicted:
                item.setFont(self._italic)
            colour = _STATE_COLOURS.get(row.state) if key == "state" else None
            if colour:
                item.setForeground(QColor(colour))
            items.append(item)
        return items

    @staticmethod
    def _tooltip(row: CompareRow) -> str:
        lines = [f"Run {row.run_id}: {row.model} {row.label} ({row.kind}, {row.state})"]
        if row.need_gib is not None:
            how = "file size" if row.need_is_estimate else "planned GPU memory"
            lines.append(f"Needs {row.need_gib:.2f} GiB ({how})")
        if row.note:
            lines.append(f"Note: {row.note}")
        return "\n".join(lines)


class CompareTable(QTableView):
    """The sortable view; :meth:`selected_run_ids` is what the charts and buttons act on."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source = CompareTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.source)
        self.proxy.setSortRole(_SORT_ROLE)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(24)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setHighlightSections(False)
        self._sized_for = 0  # how many rows the columns were last fitted to

    def set_rows(self, rows: Sequence[CompareRow]) -> None:
        keep = set(self.selected_run_ids())
        grew = len(rows) != self._sized_for
        self.source.set_rows(rows)
        if rows and grew:  # new runs may hold wider figures (PPL ± err): widen, never shrink
            self._size_columns(widen_only=self._sized_for > 0)
            self._sized_for = len(rows)
        if keep:
            self.select_runs(keep)

    def _size_columns(self, sample: int = 25, widen_only: bool = False) -> None:
        """Fit columns to the header and the first rows (resizeColumnsToContents reads every
        cell: 100 ms for 100 runs)."""
        metrics = self.fontMetrics()
        header = self.horizontalHeader().fontMetrics()
        for col, (key, heading, _f, _t) in enumerate(TABLE_COLUMNS[:-1]):
            widest = header.horizontalAdvance(heading) + 28  # room for the sort arrow
            for row in range(min(sample, self.source.rowCount())):
                text = self.source.data(self.source.index(row, col)) or ""
                widest = max(widest, metrics.horizontalAdvance(str(text)) + 14)
            if key == "fits":
                widest = max(widest, 130)
            widest = min(widest, 180)
            if widen_only:
                widest = max(widest, self.columnWidth(col))
            self.setColumnWidth(col, widest)

    def selected_run_ids(self) -> list[int]:
        sel = self.selectionModel()
        if sel is None:
            return []
        return [int(self.proxy.data(i, RUN_ID_ROLE)) for i in sel.selectedRows()]

    def select_runs(self, run_ids: set[int] | Sequence[int]) -> None:
        wanted = set(run_ids)
        sel = self.selectionModel()
        sel.clearSelection()
        from PySide6.QtCore import QItemSelection, QItemSelectionModel

        selection = QItemSelection()
        for r in range(self.proxy.rowCount()):
            if int(self.proxy.data(self.proxy.index(r, 0), RUN_ID_ROLE)) in wanted:
                selection.select(
                    self.proxy.index(r, 0), self.proxy.index(r, self.proxy.columnCount() - 1)
                )
        sel.select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
