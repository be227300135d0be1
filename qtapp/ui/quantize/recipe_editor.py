"""The recipe editor: rules (regex -> type, why), the tensors each rule catches, the live size.

The size comes from llama.cpp's dry run (job kind ``dry_quantize``), started 400 ms after the
last edit; an older dry run still going is cancelled. Tensor names are read off the GUI thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.fit.quants import QUANT_TYPES, RECIPES, Recipe, Rule
from qtapp.core.fit.recipes_store import load_user_recipes, save_user_recipe, validate_name
from qtapp.core.jobs.events import Event, Failed, Finished
from qtapp.core.jobs.job import JobSpec
from qtapp.ui.common.context import AppContext
from qtapp.ui.common.workers import JobRunner
from qtapp.ui.quantize.options import TENSOR_TYPES

log = logging.getLogger(__name__)
PREVIEW_NAME = "__preview__"
_COLS = ["Pattern (regex)", "Type", "Why", "Catches"]


class RecipeEditor(QWidget):
    """Edit one recipe against one model. ``saved`` fires with the saved name."""

    saved = Signal(str)
    size_ready = Signal(dict)

    def __init__(
        self, ctx: AppContext, model_path: str | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.model_path = model_path
        self.tensor_names: list[str] = []
        self.n_layer = 0
        self._runner: JobRunner | None = None
        self._base_bytes: dict[tuple[str, str], int] = {}
        self._loader = None
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(400)
        self._debounce.timeout.connect(self._start_dry_run)
        self._build()
        self.load_recipe(RECIPES["Q4_K_XL"])
        if model_path:
            self.set_model(model_path)

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.start_from = QComboBox()
        self.start_from.addItems(list(RECIPES) + list(load_user_recipes()))
        self.start_from.setCurrentText("Q4_K_XL")
        self.start_from.activated.connect(lambda _i: self._start_from_chosen())
        self.name = QLineEdit()
        self.name.setPlaceholderText("my-recipe")
        self.base = QComboBox()
        self.base.addItems(list(QUANT_TYPES))
        self.base.currentTextChanged.connect(lambda _t: self._changed())
        self.description = QLineEdit()
        form.addRow("Start from", self.start_from)
        form.addRow("Name", self.name)
        form.addRow("Base type", self.base)
        form.addRow("Description", self.description)
        lay.addLayout(form)

        split = QSplitter(Qt.Orientation.Horizontal)
        table_host = QWidget()
        tl = QVBoxLayout(table_host)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(
            QLabel(
                "<b>Rules</b> (first match wins, as in llama.cpp; "
                "{first}/{last} = first/last layer)"
            )
        )
        self.table = QTableWidget(0, len(_COLS))
        self.table.setHorizontalHeaderLabels(_COLS)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.itemChanged.connect(lambda _i: self._changed())
        self.table.currentCellChanged.connect(lambda *_a: self._show_caught())
        tl.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        for text, slot in (
            ("Add rule", self.add_rule),
            ("Remove", self._remove_rule),
            ("Up", lambda: self._move(-1)),
            ("Down", lambda: self._move(1)),
        ):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch(1)
        tl.addLayout(buttons)
        split.addWidget(table_host)
        caught_host = QWidget()
        cl = QVBoxLayout(caught_host)
        cl.setContentsMargins(0, 0, 0, 0)
        self.caught_label = QLabel("<b>Tensors the selected rule catches</b>")
        self.caught = QListWidget()
        cl.addWidget(self.caught_label)
        cl.addWidget(self.caught, 1)
        split.addWidget(caught_host)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay.addWidget(split, 1)

        bottom = QHBoxLayout()
        self.size_label = QLabel("Size: open a model to see it")
        self.size_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.save_button = QPushButton("Save as my recipe")
        self.save_button.setObjectName("primary")
        self.save_button.clicked.connect(self.save)
        bottom.addWidget(self.size_label, 1)
        bottom.addWidget(self.message, 1)
        bottom.addWidget(self.save_button)
        lay.addLayout(bottom)

    # -- model -------------------------------------------------------------------------------
    def set_model(self, path: str | Path) -> None:
        from qtapp.core.gguf.tensor_names import read_tensor_names
        from qtapp.ui.common.background import BackgroundCall

        self.model_path = str(path)
        self.size_label.setText("Reading the model's tensors…")
        call = BackgroundCall(lambda _c: read_tensor_names(path), "recipe-tensors", self)
        call.finished.connect(self._on_names)
        call.failed.connect(lambda msg: self.size_label.setText(msg))
        self._loader = call.start()

    def _on_names(self, tensors: object) -> None:
        self.tensor_names = list(tensors.names)  # type: ignore[attr-defined]
        self.n_layer = int(tensors.n_layer)  # type: ignore[attr-defined]
        self._changed()

    # -- rules -------------------------------------------------------------------------------
    def load_recipe(self, recipe: Recipe) -> None:
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for rule in recipe.rules:
            self._append(rule.pattern, rule.type, rule.why)
        self.table.blockSignals(False)
        self.name.setText("" if recipe.builtin else recipe.name)
        self.base.setCurrentText(recipe.base)
        self.description.setText(recipe.description)
        self._changed()

    def _start_from_chosen(self) -> None:
        name = self.start_from.currentText()
        recipe = RECIPES.get(name) or load_user_recipes().get(name)
        if recipe is not None:
            self.load_recipe(recipe)

    def _append(self, pattern: str, type_name: str, why: str) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self.table.setItem(row, 0, QTableWidgetItem(pattern))
        combo = QComboBox()
        combo.addItems(
            TENSOR_TYPES
            + [t for t in ("Q2_K", "Q3_K", "IQ2_XXS", "IQ3_S") if t not in TENSOR_TYPES]
        )
        combo.setCurrentText(type_name)
        combo.currentTextChanged.connect(lambda _t: self._changed())
        self.table.setCellWidget(row, 1, combo)
        self.table.setItem(row, 2, QTableWidgetItem(why))
        count = QTableWidgetItem("")
        count.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
        count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.table.setItem(row, 3, count)

    def add_rule(self, pattern: str = r"ffn_down", type_name: str = "Q6_K", why: str = "") -> None:
        self.table.blockSignals(True)
        self._append(pattern if isinstance(pattern, str) else r"ffn_down", type_name, why)
        self.table.blockSignals(False)
        self._changed()

    def _remove_rule(self) -> None:
        row = self.table.currentRow()
        if row >= 0:
            self.table.removeRow(row)
            self._changed()

    def _move(self, delta: int) -> None:
        row = self.table.currentRow()
        target = row + delta
        if row < 0 or not 0 <= target < self.table.rowCount():
            return
        rules = self.rules()
        rules[row], rules[target] = rules[target], rules[row]
        self.load_recipe(
            Recipe(
                self.name.text() or PREVIEW_NAME,
                self.base.currentText(),
                tuple(rules),
                self.description.text(),
                builtin=False,
            )
        )
        self.table.setCurrentCell(target, 0)

    def rules(self) -> list[Rule]:
        out = []
        for row in range(self.table.rowCount()):
            pattern = (self.table.item(row, 0).text() if self.table.item(row, 0) else "").strip()
            combo = self.table.cellWidget(row, 1)
            why = self.table.item(row, 2).text() if self.table.item(row, 2) else ""
            if pattern:
                out.append(Rule(pattern, combo.currentText(), why))  # type: ignore[union-attr]
        return out

    def recipe(self, name: str | None = None) -> Recipe:
        return Recipe(
            name or self.name.text().strip() or PREVIEW_NAME,
            self.base.currentText(),
            tuple(self.rules()),
            self.description.text().strip(),
            builtin=False,
        )

    # -- live feedback -----------------------------------------------------------------------
    def _changed(self) -> None:
        recipe = self.recipe(PREVIEW_NAME)
        try:
            recipe.validate()
        except ValueError as exc:
            self.message.setText(f"<span style='color:#c0392b'>{exc}</span>")
            return
        self.message.setText("")
        if self.tensor_names:
            caught = recipe.matches(self.tensor_names, self.n_layer)
            self.table.blockSignals(True)
            for row, rule in enumerate(recipe.rules):
                item = self.table.item(row, 3)
                if item is not None:
                    item.setText(str(len(caught.get(rule.pattern, []))))
            self.table.blockSignals(False)
            self._caught = caught
            self._show_caught()
            self._debounce.start()

    def _show_caught(self) -> None:
        self.caught.clear()
        row = self.table.currentRow()
        rules = self.rules()
        if not self.tensor_names or not 0 <= row < len(rules):
            return
        names = getattr(self, "_caught", {}).get(rules[row].pattern, [])
        self.caught_label.setText(
            f"<b>{len(names)} tensors</b> caught by <code>{rules[row].pattern}</code>"
        )
        types = getattr(self, "_types", {})
        self.caught.addItems(
            [f"{n}  →  {types[n]}" if n in types else n for n in names]
            or ["(none: an earlier rule or no tensor matches)"]
        )

    def _start_dry_run(self) -> None:
        if not self.model_path:
            return
        self.size_label.setText("Size: computing…")
        self._run_dry(PREVIEW_NAME, [self.recipe(PREVIEW_NAME).to_dict()])

    def _run_dry(self, target: str, user_recipes: list[dict[str, object]]) -> None:
        if self._runner is not None and self._runner.is_running():
            self._runner.cancel()
        params = {
            "model": self.model_path,
            "target": target,
            "allow_requantize": True,
            "n_layer": self.n_layer,
            "user_recipes": user_recipes,
        }
        runner = JobRunner(JobSpec("dry_quantize", params), self)
        runner.done.connect(lambda ev, r=runner: self._on_dry_run(r, ev))
        self._runner = runner
        runner.start()

    def _on_dry_run(self, runner: JobRunner, event: Event) -> None:
        if runner is not self._runner:
            return
        target = runner.spec.params["target"]
        if isinstance(event, Failed):
            self.size_label.setText(f"Size: {event.message}")
            return
        if not isinstance(event, Finished):
            return
        r = event.result
        if target != PREVIEW_NAME:  # the plain base type, for comparison
            self._base_bytes[(self.model_path or "", target)] = int(r["bytes"])
            self._show_size()
            return
        self._last = dict(r)
        self._types = {t["name"]: t["type"] for t in r["tensors"]}
        self._show_caught()
        self._show_size()
        self.size_ready.emit(dict(r))
        base = self.base.currentText()
        if (self.model_path or "", base) not in self._base_bytes:
            self._run_dry(base, [])

    def _show_size(self) -> None:
        r = getattr(self, "_last", None)
        if not r:
            return
        n = sum(_elements(t["shape"]) for t in r["tensors"]) or 1
        text = (
            f"Size: <b>{r['bytes'] / 2**20:,.1f} MiB</b> of tensor data"
            f" · {r['bytes'] * 8 / n:.2f} bpw"
        )
        base = self.base.currentText()
        plain = self._base_bytes.get((self.model_path or "", base))
        if plain is not None:
            delta = (r["bytes"] - plain) / 2**20
            text += f" · {delta:+,.1f} MiB vs plain {base} ({plain / 2**20:,.1f} MiB)"
        self.size_label.setText(text)

    def save(self) -> bool:
        name = self.name.text().strip()
        problem = validate_name(name)
        if problem:
            self.message.setText(f"<span style='color:#c0392b'>{problem}</span>")
            return False
        try:
            path = save_user_recipe(self.recipe(name))
        except ValueError as exc:
            self.message.setText(f"<span style='color:#c0392b'>{exc}</span>")
            return False
        self.message.setText(f"Saved as {name} ({path.name}).")
        self.saved.emit(name)
        return True

    def shutdown(self) -> None:
        self._debounce.stop()
        if self._runner is not None:
            self._runner.cancel()
            self._runner.wait()


def _elements(shape: list[int]) -> int:
    n = 1
    for dim in shape:
        n *= int(dim)
    return n


class RecipeEditorDialog(QDialog):
    """The editor in a non-modal window."""

    saved = Signal(str)

    def __init__(self, ctx: AppContext, model_path: str | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Recipe editor")
        self.resize(1000, 640)
        lay = QVBoxLayout(self)
        self.editor = RecipeEditor(ctx, model_path, self)
        self.editor.saved.connect(self.saved)
        lay.addWidget(self.editor)

    def done(self, result: int) -> None:  # noqa: D401 - Qt override
        self.editor.shutdown()
        super().done(result)
