"""The fit table: one row per quant type and recipe, memory per device, verdict, predicted speed."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from qtapp.core.plan import Plan, PlanRow
from qtapp.ui.model_card import human_bytes

VERDICT_TEXT = {"fits": "Fits on GPU", "partial": "Partial offload", "no": "Does not fit"}
VERDICT_COLOUR = {"fits": "#2e9d57", "partial": "#d98b00", "no": "#d64545"}
CPU_VERDICT = {"fits": "Fits in RAM", "partial": "Partial", "no": "Does not fit"}
_Index = QModelIndex | QPersistentModelIndex


def _gib(b: float) -> str:
    return f"{b / 1024**3:.2f}" if b >= 0.1 * 1024**3 else f"{b / 1024**3:.3f}"


class FitTableModel(QAbstractTableModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.plan: Plan | None = None
        self.rows: list[PlanRow] = []
        self.devices: list[str] = []
        self.recommended: str | None = None

    # columns: Type, bpw, Weights, <device totals>, KV, Compute, Layers, Verdict, pp, tg, Figures
    def headers(self) -> list[str]:
        return (
            ["Type", "bpw", "Weights"]
            + list(self.devices)
            + ["KV", "Compute", "Layers", "Verdict", "pp t/s*", "tg t/s*", "Figures"]
        )

    def set_plan(self, plan: Plan) -> None:
        devices = [d.name for d in plan.devices]
        reset = (
            devices != self.devices
            or len(plan.rows) != len(self.rows)
            or [r.type for r in plan.rows] != [r.type for r in self.rows]
        )
        if reset:
            self.beginResetModel()
        self.plan, self.rows, self.devices = plan, plan.rows, devices
        self.recommended = plan.recommended
        if reset:
            self.endResetModel()
        elif self.rows:
            self.dataChanged.emit(
                self.index(0, 0), self.index(len(self.rows) - 1, self.columnCount() - 1)
            )

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt API
        return 0 if parent.isValid() else len(self.headers())

    def headerData(
        self,
        section: int,
        orientation: Qt.Orientation,  # noqa: N802 - Qt API
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.headers()[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            name = self.headers()[section]
            if name.endswith("t/s*"):
                return "Predicted tokens/s (memory bandwidth / compute model), until measured."
            if name in ("Weights", "KV", "Compute") or name in self.devices:
                return f"{name}, GiB (hover a device cell for its breakdown)"
            if name == "Layers":
                return "Layers on the GPUs (n_gpu_layers; the output layer counts as one)"
            if name == "Figures":
                return (
                    "exact: llama.cpp's own sizes (dry-run quantization and no-alloc load);"
                    " estimate: instant figures while those run."
                )
        return None

    def _cell(self, row: PlanRow, col: int) -> str:
        n_dev = len(self.devices)
        if col == 0:
            name = "current file" if row.type == "current" else row.type
            if row.needs_imatrix:
                name += "  (imatrix)"
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
        if col == 4:
            return f"{row.predicted_pp_tps:,.0f}"
        if col == 5:
            return f"{row.predicted_tg_tps:,.1f}"
        if col == 6:
            if row.weights_exact and row.memory_exact:
                gpu = any(d != "CPU" for d in self.devices)
                return "exact W + KV" if gpu else "exact"
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
                lines.append(f"  CUDA context + libraries {human_bytes(d.overhead_bytes)}")
            if d.budget_bytes:
                lines.append(f"usable: {human_bytes(d.budget_bytes)}")
            return "\n".join(lines)
        if col == 3 + n_dev + 2 and row.llama_args:
            return f"llama.cpp flags for this placement: {row.llama_args}"
        if col == 3 + n_dev + 6:
            return (
                "Weights: llama.cpp's dry-run quantization. KV cache and CPU compute: "
                "llama.cpp's no-alloc load. GPU compute buffers: scaled from llama.cpp's "
                "CPU figure; CUDA overhead: measured on an H200 (613 / 826 MiB)."
            )
        if col == 0 and row.needs_imatrix:
            return "llama.cpp needs an importance matrix (imatrix) for this type."
        if col == 3 + n_dev + 3 and row.note:
            return row.note
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        row = self.rows[index.row()]
        col = index.column()
        verdict_col = 3 + len(self.devices) + 3
        if role == Qt.ItemDataRole.DisplayRole:
            return self._cell(row, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, col)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if col == 0 or col == verdict_col or col == verdict_col + 3:
                return int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft)
            return int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight)
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == verdict_col:
                return QBrush(QColor(VERDICT_COLOUR[row.verdict]))
            if 3 <= col < 3 + len(self.devices):
                d = row.devices[col - 3]
                if d.budget_bytes and d.total_bytes > d.budget_bytes:
                    return QBrush(QColor(VERDICT_COLOUR["no"]))
            if col == verdict_col + 3 and row.weights_exact and row.memory_exact:
                return QBrush(QColor(VERDICT_COLOUR["fits"]))
        if role == Qt.ItemDataRole.FontRole and (
            col == verdict_col or (col == 0 and row.type == self.recommended)
        ):
            f = QFont()
            f.setBold(True)
            return f
        if role == Qt.ItemDataRole.UserRole:
            return row.type
        return None


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
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.setWordWrap(False)
        self.follow_recommendation = True  # until the user picks a row
        self.selectionModel().currentRowChanged.connect(self._on_current)

    def set_plan(self, plan: Plan) -> None:
        keep = self.selected_types()
        current = self.current_type()
        self.model_.set_plan(plan)
        if current is None or self.follow_recommendation:
            current = plan.recommended or current
        if current is not None:
            self.select_type(current, keep)
        self.row_selected.emit(self.current_row())

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
