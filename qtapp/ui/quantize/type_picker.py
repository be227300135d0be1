"""A checkable list of every quant type and recipe, grouped by family, best quality first."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem, QWidget

from qtapp.core.app.glossary import explain_quant
from qtapp.core.fit.quants import QUANT_TYPES, RECIPES, QuantType, Recipe, quality_rank

_FAMILIES = [
    ("float", "Float (lossless or near)"),
    ("legacy", "Legacy (Q8_0, Q4_0 ...)"),
    ("k-quant", "K-quants"),
    ("i-quant", "I-quants"),
    ("recipes", "Dynamic recipes (*_XL)"),
    ("user", "My recipes"),
    ("mxfp4", "MXFP4 (mixture-of-experts)"),
    ("ternary", "Ternary (BitNet-like models only)"),
]
IMATRIX_MARK = "needs imatrix"


class QuantTypePicker(QTreeWidget):
    """Checkable targets; ``selection_changed`` fires with the checked names."""

    selection_changed = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setColumnCount(3)
        self.setHeaderLabels(["Type", "bpw", "Note"])
        self.setRootIsDecorated(True)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        header = self.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self._items: dict[str, QTreeWidgetItem] = {}
        self._groups: dict[str, QTreeWidgetItem] = {}
        self.itemChanged.connect(self._on_changed)
        self.set_user_recipes({})

    # -- building ----------------------------------------------------------------------------
    def set_user_recipes(self, user: dict[str, Recipe]) -> None:
        checked = set(self.checked())
        self.blockSignals(True)
        self.clear()
        self._items.clear()
        self._groups.clear()
        for key, title in _FAMILIES:
            group = QTreeWidgetItem(self, [title])
            group.setFlags(Qt.ItemFlag.ItemIsEnabled)
            font = group.font(0)
            font.setBold(True)
            group.setFont(0, font)
            group.setFirstColumnSpanned(True)
            self._groups[key] = group
        types = sorted(QUANT_TYPES.values(), key=lambda t: -quality_rank(t.name))
        for qtype in types:
            self._add(
                self._groups[qtype.family],
                qtype.name,
                f"{qtype.bpw:.2f}",
                self._note(qtype),
                self._tooltip(qtype),
            )
        for recipe in RECIPES.values():
            self._add(
                self._groups["recipes"],
                recipe.name,
                f"~{QUANT_TYPES[recipe.base].bpw + 0.5:.1f}",
                recipe.description,
                _recipe_tooltip(recipe),
            )
        for recipe in user.values():
            self._add(
                self._groups["user"],
                recipe.name,
                "",
                recipe.description or f"{recipe.base} + {len(recipe.rules)} rules",
                _recipe_tooltip(recipe),
            )
        self._groups["user"].setHidden(not user)
        for key in ("float", "legacy", "k-quant", "recipes", "user"):
            self._groups[key].setExpanded(True)
        self.blockSignals(False)
        self.set_checked(checked & set(self._items))

    def _add(self, group: QTreeWidgetItem, name: str, bpw: str, note: str, tip: str) -> None:
        item = QTreeWidgetItem(group, [name, bpw, note])
        item.setFlags(
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsUserCheckable
            | Qt.ItemFlag.ItemIsSelectable
        )
        item.setCheckState(0, Qt.CheckState.Unchecked)
        item.setData(0, Qt.ItemDataRole.UserRole, name)
        item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        for col in range(3):
            item.setToolTip(col, tip)
        if IMATRIX_MARK in note:
            item.setForeground(2, Qt.GlobalColor.darkYellow)
        self._items[name] = item

    @staticmethod
    def _note(qtype: QuantType) -> str:
        parts = []
        if qtype.needs_imatrix:
            parts.append(IMATRIX_MARK)
        if qtype.special:
            parts.append(qtype.special)
        parts.append(qtype.note)
        return " · ".join(parts)

    @staticmethod
    def _tooltip(qtype: QuantType) -> str:
        lines = [
            f"<b>{qtype.name}</b> (llama_ftype {qtype.ftype}, about {qtype.bpw:.2f} bits "
            f"per weight)",
            explain_quant(qtype.name),
            f"llama.cpp: {qtype.note}",
        ]
        if qtype.needs_imatrix:
            from qtapp.core.quantize.imatrix_jobs import required_why

            lines.append(
                required_why(qtype.name) + " Make one with <i>Make importance matrix</i> "
                "or choose an imatrix file."
            )
        if qtype.special:
            lines.append(f"Only sensible when: {qtype.special}.")
        return "<br>".join(lines)

    # -- state -------------------------------------------------------------------------------
    def checked(self) -> list[str]:
        return [
            name
            for name, item in self._items.items()
            if item.checkState(0) == Qt.CheckState.Checked
        ]

    def set_checked(self, names: Iterable[str]) -> None:
        wanted = {n.upper() for n in names}
        self.blockSignals(True)
        for name, item in self._items.items():
            on = name.upper() in wanted
            item.setCheckState(0, Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            if on:
                item.parent().setExpanded(True)
        self.blockSignals(False)
        self.selection_changed.emit(self.checked())

    def names(self) -> list[str]:
        return list(self._items)

    def _on_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if column == 0:
            self.selection_changed.emit(self.checked())


def _recipe_tooltip(recipe: Recipe) -> str:
    rows = "".join(
        f"<tr><td><code>{r.pattern}</code></td><td>&rarr; {r.type}</td><td>{r.why}</td></tr>"
        for r in recipe.rules
    )
    return (
        f"<b>{recipe.name}</b>: base {recipe.base}. First matching rule wins.<table>{rows}</table>"
    )
