"""The Settings page: each field of :class:`~qtapp.core.app.settings.Settings`, saved on change."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.app.glossary import explain
from qtapp.core.app.paths import resources_dir
from qtapp.core.app.settings import KV_TYPES, THEMES, Settings
from qtapp.ui.common.context import AppContext
from qtapp.ui.common.theme import apply_theme

log = logging.getLogger(__name__)

THEME_LABELS = {"system": "Follow the system", "light": "Light", "dark": "Dark"}


def open_folder(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


def _set_clamped(spin: QSpinBox, value: int) -> None:
    """A hand-edited settings file may hold any number; QSpinBox.setValue() raises
    OverflowError past 32 bits, which would stop the window from opening."""
    spin.setValue(max(spin.minimum(), min(spin.maximum(), int(value))))


class Page(QWidget):
    key = "settings"
    title = "Settings"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._loading = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        lay = QVBoxLayout(body)
        lay.setContentsMargins(24, 20, 24, 16)
        lay.setSpacing(14)
        title = QLabel("Settings")
        title.setObjectName("pageTitle")
        note = QLabel("Changes are saved at once.")
        note.setObjectName("muted")
        lay.addWidget(title)
        lay.addWidget(note)

        # -- llama.cpp -------------------------------------------------------------------------
        run_box = QGroupBox("Running models")
        form = QFormLayout(run_box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.threads = QSpinBox()
        self.threads.setRange(0, 512)
        self.threads.setSpecialValueText("Auto")
        self.threads.setMinimumWidth(140)
        self.threads.setToolTip(explain("threads"))
        self.ctx_size = QSpinBox()
        self.ctx_size.setRange(256, 1_048_576)
        self.ctx_size.setSingleStep(1024)
        self.ctx_size.setSuffix(" tokens")
        self.ctx_size.setMinimumWidth(140)
        self.ctx_size.setToolTip(explain("context"))
        self.kv_type = QComboBox()
        self.kv_type.addItems(list(KV_TYPES))
        self.kv_type.setMinimumWidth(140)
        self.kv_type.setToolTip(explain("kv_type"))
        self.margin = QSpinBox()
        self.margin.setRange(0, 65536)
        self.margin.setSingleStep(256)
        self.margin.setSuffix(" MiB")
        self.margin.setMinimumWidth(140)
        self.margin.setToolTip(explain("gpu_margin"))
        form.addRow("CPU threads:", self.threads)
        form.addRow("Default context:", self.ctx_size)
        form.addRow("KV cache type:", self.kv_type)
        form.addRow("Keep free on each GPU:", self.margin)
        lay.addWidget(run_box)

        # -- files -----------------------------------------------------------------------------
        files_box = QGroupBox("Files")
        ff = QFormLayout(files_box)
        self.output_dir = QLineEdit()
        self.output_dir.setToolTip("Where new quants are written")
        out_row = self._with_buttons(self.output_dir, ("Browse…", self._browse_output))
        ff.addRow("Quants go to:", out_row)
        self.eval_text = QLineEdit()
        builtin = resources_dir() / "texts" / "kjv-genesis-exodus.txt"
        self.eval_text.setPlaceholderText(f"Built-in: {builtin.name}")
        self.eval_text.setToolTip(
            "A UTF-8 text file to measure perplexity and KL divergence on. Leave empty for the "
            "built-in text. Use the same text when you compare quants."
        )
        ff.addRow(
            "Evaluation text:",
            self._with_buttons(
                self.eval_text, ("Browse…", self._browse_text), ("Built-in", self._clear_text)
            ),
        )
        self.dirs = QListWidget()
        self.dirs.setMaximumHeight(96)
        self.dirs.setToolTip("Folders the Models page searches besides the usual stores")
        dirs_buttons = QVBoxLayout()
        add = QPushButton("Add…")
        add.clicked.connect(self._add_dir)
        remove = QPushButton("Remove")
        remove.clicked.connect(self._remove_dir)
        dirs_buttons.addWidget(add)
        dirs_buttons.addWidget(remove)
        dirs_buttons.addStretch(1)
        dirs_row = QHBoxLayout()
        dirs_row.addWidget(self.dirs, 1)
        dirs_row.addLayout(dirs_buttons)
        dirs_widget = QWidget()
        dirs_widget.setLayout(dirs_row)
        dirs_row.setContentsMargins(0, 0, 0, 0)
        ff.addRow("Model folders:", dirs_widget)
        lay.addWidget(files_box)

        # -- appearance ------------------------------------------------------------------------
        look_box = QGroupBox("Appearance")
        lf = QFormLayout(look_box)
        lf.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
        self.theme = QComboBox()
        for value in THEMES:
            self.theme.addItem(THEME_LABELS[value], value)
        self.theme.setMinimumWidth(180)
        lf.addRow("Theme:", self.theme)
        lay.addWidget(look_box)

        # -- network ----------------------------------------------------------------------------
        net_box = QGroupBox("Network")
        nf = QFormLayout(net_box)
        self.network = QCheckBox(
            "Allow downloads I ask for (models and their headers from Hugging Face, standard "
            "task files)"
        )
        self.network.setToolTip(
            "Off: QuantLens never touches the network. On: only what you start: reading the "
            "headers of a Hugging Face repo's GGUF files and downloading the one you choose "
            "(Find a model page), and standard task files (Evaluate page, 'Get a standard "
            "set'); nothing is fetched by itself."
        )
        nf.addRow("Downloads:", self.network)
        lay.addWidget(net_box)

        # -- where QuantLens keeps things ------------------------------------------------------
        where_box = QGroupBox("QuantLens folders")
        wf = QFormLayout(where_box)
        paths = ctx.paths
        for label, folder in (
            ("Results and models:", paths.data),
            ("Settings:", paths.config),
            ("Cache:", paths.cache),
            ("Logs:", paths.logs),
        ):
            shown = QLineEdit(str(folder))
            shown.setReadOnly(True)
            wf.addRow(
                label, self._with_buttons(shown, ("Open folder", lambda f=folder: open_folder(f)))
            )
        lay.addWidget(where_box)
        self.saved_label = QLabel("")
        self.saved_label.setObjectName("muted")
        reset = QPushButton("Reset to defaults")
        reset.clicked.connect(self.reset)
        bottom = QHBoxLayout()
        bottom.addWidget(self.saved_label, 1)
        bottom.addWidget(reset)
        lay.addLayout(bottom)
        lay.addStretch(1)

        for form_layout in (form, ff, lf, nf, wf):  # one label column across the boxes
            for row in range(form_layout.rowCount()):
                item = form_layout.itemAt(row, QFormLayout.ItemRole.LabelRole)
                if item is not None and item.widget() is not None:
                    item.widget().setMinimumWidth(170)

        self.load()
        self.threads.valueChanged.connect(self.save)
        self.ctx_size.valueChanged.connect(self.save)
        self.kv_type.currentTextChanged.connect(self.save)
        self.margin.valueChanged.connect(self.save)
        self.output_dir.editingFinished.connect(self.save)
        self.eval_text.editingFinished.connect(self.save)
        self.theme.currentIndexChanged.connect(self._theme_changed)
        self.network.toggled.connect(self.save)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.load()  # other pages add model folders and recent files

    @staticmethod
    def _with_buttons(field: QWidget, *buttons: tuple[str, object]) -> QWidget:
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(field, 1)
        for text, slot in buttons:
            button = QPushButton(text)
            button.clicked.connect(slot)
            row.addWidget(button)
        holder = QWidget()
        holder.setLayout(row)
        holder.setMinimumWidth(520)
        return holder

    # -- load / save ---------------------------------------------------------------------------
    def load(self) -> None:
        s = Settings.load()
        self._loading = True
        try:
            _set_clamped(self.threads, s.threads)
            _set_clamped(self.ctx_size, s.default_ctx)
            if self.kv_type.findText(s.kv_type) < 0:
                self.kv_type.addItem(s.kv_type)
            self.kv_type.setCurrentText(s.kv_type)
            _set_clamped(self.margin, s.gpu_margin_mib)
            self.output_dir.setText(s.output_dir)
            self.eval_text.setText(s.eval_text or "")
            self.dirs.clear()
            self.dirs.addItems(s.extra_model_dirs)
            self.theme.setCurrentIndex(max(0, self.theme.findData(s.theme)))
            self.network.setChecked(s.network_allowed)
        finally:
            self._loading = False

    def save(self) -> None:
        """Read the file again and change only this page's fields (others write recent models)."""
        if self._loading:
            return
        s = Settings.load()
        s.threads = self.threads.value()
        s.default_ctx = self.ctx_size.value()
        s.kv_type = self.kv_type.currentText()
        s.gpu_margin_mib = self.margin.value()
        s.output_dir = self.output_dir.text().strip() or Settings().output_dir
        s.eval_text = self.eval_text.text().strip() or None
        s.extra_model_dirs = [self.dirs.item(i).text() for i in range(self.dirs.count())]
        s.theme = self.theme.currentData() or "system"
        s.network_allowed = self.network.isChecked()
        if s.eval_text and not Path(s.eval_text).is_file():
            self.saved_label.setText(f"Saved, but {s.eval_text} is not a file: pick a text file.")
        else:
            self.saved_label.setText("Saved.")
        s.save()

    def reset(self) -> None:
        s = Settings.load()
        fresh = Settings(first_run_done=s.first_run_done, recent_models=s.recent_models)
        fresh.save()
        self.load()
        apply_theme(fresh.theme)
        self.saved_label.setText("Back to the defaults.")

    def _theme_changed(self) -> None:
        if self._loading:
            return
        self.save()
        apply_theme(self.theme.currentData() or "system")

    # -- pickers -------------------------------------------------------------------------------
    def _browse_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Where should quants go?", self.output_dir.text()
        )
        if folder:
            self.output_dir.setText(folder)
            self.save()

    def _browse_text(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Evaluation text", str(Path.home()), "Text files (*.txt);;All files (*)"
        )
        if path:
            self.eval_text.setText(path)
            self.save()

    def _clear_text(self) -> None:
        self.eval_text.clear()
        self.save()

    def _add_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder with GGUF models")
        if folder:
            self.add_model_dir(folder)

    def add_model_dir(self, folder: str) -> None:
        existing = [self.dirs.item(i).text() for i in range(self.dirs.count())]
        if folder not in existing:
            self.dirs.addItem(folder)
            self.save()

    def _remove_dir(self) -> None:
        for item in self.dirs.selectedItems():
            self.dirs.takeItem(self.dirs.row(item))
        self.save()
