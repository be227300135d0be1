"""The Find page's table: one row per file (or split set) of the repo, with its fit badge."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from qtapp.core.remote.fit import FileFit
from qtapp.ui.fit.table import VERDICT_COLOUR

COLUMNS = ("File", "Type", "Download", "Fit", "GPU", "Host RAM", "Gen t/s", "Layers on GPU")
BADGES = {
    "fits": "✔ Fits on GPU",
    "partial": "◐ Partial offload",
    "no": "✖ Does not fit",
    "error": "⚠ Cannot plan",
}
CPU_BADGES = {"fits": "✔ Fits in RAM", "partial": "◐ Partial", "no": "✖ Does not fit"}
ERROR_COLOUR = "#8a8a8a"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class FileTable(QTableWidget):
    """Rows appear as their headers are read; :meth:`mark_recommended` stars the choice."""

    def __init__(self) -> None:
        super().__init__(0, len(COLUMNS))
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(28)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col, width in enumerate((330, 80, 90, 150, 80, 90, 75)):
            self.setColumnWidth(col, width)
        self.fits: list[FileFit] = []
        self.gpu_less = False

    def clear_files(self, gpu_less: bool) -> None:
        self.setRowCount(0)
        self.fits = []
        self.gpu_less = gpu_less

    def add_file(self, fit: FileFit) -> None:
        row = self.rowCount()
        self.insertRow(row)
        self.fits.append(fit)
        m = fit.model
        name = m.name + (f"  ({m.shards} parts)" if m.shards > 1 else "")
        current = fit.current
        badge = (CPU_BADGES if self.gpu_less and fit.verdict != "error" else BADGES)[fit.verdict]
        gpu = not self.gpu_less and current is not None
        if gpu and fit.verdict == "partial" and current and current.n_gpu_layers == 0:
            badge = "◐ Layers on CPU"  # only buffers fit on the GPU: every layer runs on the CPU
        cells = [name, fit.file_type or "—", human_bytes(m.size), badge]
        if current is not None:
            cells += [
                human_bytes(current.gpu_bytes) if not self.gpu_less else "—",
                human_bytes(current.host_bytes),
                f"{current.tg_tps:.1f}",
                current.note or ("all" if not self.gpu_less else "—"),
            ]
        else:
            cells += ["", "", "", fit.error or ""]
        colour = QColor(VERDICT_COLOUR.get(fit.verdict, ERROR_COLOUR))
        for col, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(fit.error or _tooltip(fit))
            if col in (2, 4, 5, 6):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if col == 3:
                item.setForeground(QBrush(colour))
                font = QFont(item.font())
                font.setBold(True)
                item.setFont(font)
            if fit.error and col != 3:
                item.setForeground(QBrush(QColor(ERROR_COLOUR)))
            self.setItem(row, col, item)

    def mark_recommended(self, name: str | None) -> None:
        for row, fit in enumerate(self.fits):
            item = self.item(row, 0)
            chosen = fit.model.name == name
            text = item.text().removeprefix("★ ")
            item.setText(f"★ {text}" if chosen else text)
            for col in range(self.columnCount()):
                cell = self.item(row, col)
                font = QFont(cell.font())
                font.setBold(chosen or col == 3)
                cell.setFont(font)
            if chosen:
                self.selectRow(row)

    def selected(self) -> FileFit | None:
        rows = self.selectionModel().selectedRows()
        return self.fits[rows[0].row()] if rows else None


def _tooltip(fit: FileFit) -> str:
    """Per device, what the file needs (weights, KV cache, compute) of what it may use, as the
    Fit page shows it; then the placement's llama.cpp flags and every shard's sha256."""
    lines: list[str] = []
    row = fit.current
    if row is not None:
        for u in row.devices:
            parts = f"weights {human_bytes(u.weights_bytes)} + KV cache {human_bytes(u.kv_bytes)}"
            parts += f" + compute {human_bytes(u.compute_bytes + u.overhead_bytes)}"
            of = f" of {human_bytes(u.budget_bytes)} usable" if u.budget_bytes else ""
            lines.append(f"{u.device}: {parts} = {human_bytes(u.total_bytes)}{of}")
        lines.append(f"about {row.tg_tps:.1f} tokens/s generating, {row.pp_tps:.0f} reading")
        if row.llama_args:
            lines.append(f"llama.cpp placement: {row.llama_args}")
        lines.append("'Open its plan' shows every quant type with llama.cpp's exact figures.")
    lines += [f"{f.path}  sha256 {f.sha256 or '?'}" for f in fit.model.files]
    return "\n".join(lines)
