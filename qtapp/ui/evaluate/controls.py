"""The Evaluate page's left-hand panel: models, base, text, chunks, speed, Start and Cancel."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.evaluate.base_cache import cache_size, clear_cache
from qtapp.core.evaluate.task_sets import (
    NETWORK_OFF_HINT,
    SOURCES_NOTE,
    STANDARD_SETS,
    fetch_task_set,
)
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.progress import ProgressBar
from qtapp.ui.quantize.options import PathField

GGUF_FILTER = "GGUF models (*.gguf);;All files (*)"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


class EvalControls(QWidget):
    """Inputs of an evaluation. ``start`` and ``cancel`` are the buttons' requests."""

    start = Signal()
    cancel = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)

        models_box = QGroupBox("Models to evaluate")
        mv = QVBoxLayout(models_box)
        self.models = QListWidget()
        self.models.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.models.setMinimumHeight(70)
        self.models.setMaximumHeight(130)
        self.models.setToolTip("Each model is evaluated in turn; their curves overlay.")
        mv.addWidget(self.models)
        row = QHBoxLayout()
        add = QPushButton("Add…")
        add.clicked.connect(self._add_models)
        remove = QPushButton("Remove")
        remove.clicked.connect(self._remove_selected)
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        mv.addLayout(row)
        outer.addWidget(models_box)

        box = QGroupBox("Settings")
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self.base = PathField(
            "none: no KL divergence", False, "Base (reference) model", GGUF_FILTER, clearable=True
        )
        self.base.setToolTip(
            "The F16/BF16 source. Its token probabilities are computed once "
            "and cached, then every model is compared with them."
        )
        form.addRow("Base model", self.base)
        self.text = PathField(
            "bundled: KJV Genesis and Exodus (public domain)",
            False,
            "Evaluation text",
            "Text (*.txt *.raw);;All files (*)",
            clearable=True,
        )
        form.addRow("Text", self.text)
        self.ctx = QSpinBox()
        self.ctx.setRange(16, 32768)
        self.ctx.setValue(512)
        self.ctx.setSuffix(" tokens")
        form.addRow("Context", self.ctx)
        self.chunks = QSpinBox()
        self.chunks.setRange(0, 100000)
        self.chunks.setSpecialValueText("all")
        self.chunks.setValue(0)
        self.chunks.setToolTip("Chunks of the text to score (0 = all). Fewer for a quick look.")
        form.addRow("Chunks", self.chunks)
        self.speed = QCheckBox("Measure pp512 and tg128 speed")
        self.speed.setChecked(True)
        form.addRow("", self.speed)
        self.depths = QLineEdit("0")
        self.depths.setToolTip(
            "Tokens already in the KV cache when speed is measured, as llama-bench -d: "
            "e.g. 0,1024,4096,16384. Each depth is one point of the speed curves (the cache "
            "is filled once per depth, untimed). Up to the model's trained context."
        )
        self.depths.setPlaceholderText("e.g. 0,1024,4096")
        form.addRow("Speed at depths", self.depths)
        self.reps = QSpinBox()
        self.reps.setRange(1, 50)
        self.reps.setValue(5)
        form.addRow("Speed repetitions", self.reps)
        self.task_file = PathField(
            "none: no task accuracy",
            False,
            "Task file (HellaSwag, Winogrande or multiple choice)",
            "Task files (*.txt *.csv *.bin);;HellaSwag text (*.txt);;Winogrande CSV (*.csv);;"
            "Multiple choice (*.bin);;All files (*)",
            clearable=True,
        )
        self.task_file.setToolTip(
            "A task file as llama.cpp's llama-perplexity reads it: HellaSwag text (six lines "
            "per task), Winogrande CSV or multiple-choice binary, told apart by content "
            "(llama.cpp's tools/perplexity README says where the standard sets come from). "
            "Each model is scored as llama-perplexity scores it."
        )
        #: the detected format ("hellaswag", "winogrande", "mc"), None if none or unknown
        self.task_kind: str | None = None
        self.task_kind_label = QLabel("")
        self.task_file.changed.connect(self._detect_task_kind)
        form.addRow("Tasks", self.task_file)
        self.get_tasks = QToolButton()
        self.get_tasks.setText("Get…")
        self.get_tasks.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.get_tasks.setToolTip(
            "Download a standard task file (only with 'Allow downloads' on in Settings). "
            + SOURCES_NOTE
        )
        menu = QMenu(self.get_tasks)
        for key, task_set in STANDARD_SETS.items():
            menu.addAction(task_set.title, lambda k=key: self.fetch_task_set(k))
        self.get_tasks.setMenu(menu)
        self._fetch: BackgroundCall | None = None
        self.task_limit = QSpinBox()
        self.task_limit.setRange(1, 100000)
        self.task_limit.setValue(400)
        self.task_limit.setToolTip(
            "Tasks drawn and scored, as --hellaswag-tasks, --winogrande-tasks or "
            "--multiple-choice-tasks (default 400)"
        )
        limit_row = QWidget()
        limit_lay = QHBoxLayout(limit_row)
        limit_lay.setContentsMargins(0, 0, 0, 0)
        limit_lay.addWidget(self.task_limit, 1)
        limit_lay.addWidget(self.task_kind_label)
        limit_lay.addWidget(self.get_tasks)
        form.addRow("Tasks to score", limit_row)
        self.threads = QSpinBox()
        self.threads.setRange(0, 512)
        self.threads.setSpecialValueText(f"auto ({os.cpu_count() or 1})")
        form.addRow("Threads", self.threads)
        outer.addWidget(box)

        buttons = QHBoxLayout()
        self.start_btn = QPushButton("Start")
        self.start_btn.setDefault(True)
        self.start_btn.clicked.connect(self.start.emit)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel.emit)
        buttons.addWidget(self.start_btn)
        buttons.addWidget(self.cancel_btn)
        outer.addLayout(buttons)
        self.progress = ProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        outer.addWidget(self.progress)
        self.status = QLabel("Choose models and press Start.")
        self.status.setWordWrap(True)
        outer.addWidget(self.status)

        cache_row = QHBoxLayout()
        self.cache_label = QLabel()
        clear = QPushButton("Clear cache")
        clear.setToolTip("Delete the cached base-model probabilities (recomputed when needed).")
        clear.clicked.connect(self._clear_cache)
        cache_row.addWidget(self.cache_label, 1)
        cache_row.addWidget(clear)
        outer.addLayout(cache_row)
        outer.addStretch(1)
        self.refresh_cache_size()

    def add_section(self, widget: QWidget) -> None:
        """Put ``widget`` under the controls (above the stretch that keeps them at the top)."""
        outer = self.layout()
        outer.insertWidget(outer.count() - 1, widget)

    def speed_depths(self) -> list[int] | None:
        """The depths typed (None, with the reason in the status line, when unreadable)."""
        from qtapp.core.errors import QuantLensError
        from qtapp.core.evaluate.speed_sweep import parse_depths

        try:
            return parse_depths(self.depths.text() or "0")
        except QuantLensError as exc:
            self.status.setText(f"{exc.message} {exc.hint}")
            return None

    # -- models ----------------------------------------------------------------------------
    def model_paths(self) -> list[Path]:
        return [Path(self.models.item(i).data(Qt.UserRole)) for i in range(self.models.count())]

    def _add_item(self, path: Path) -> None:
        item = QListWidgetItem(path.name)
        item.setData(Qt.UserRole, str(path))
        item.setToolTip(str(path))
        self.models.addItem(item)

    def set_models(self, paths: list[Path]) -> None:
        self.models.clear()
        for p in paths:
            self._add_item(Path(p))

    def add_model(self, path: Path) -> None:
        if str(path) not in {str(p) for p in self.model_paths()}:
            self._add_item(Path(path))

    def fetch_task_set(self, key: str) -> None:
        """Download a standard set in the background (never without the user's permission),
        then make it the task file."""
        from qtapp.core.app.paths import app_paths
        from qtapp.core.app.settings import Settings

        if not Settings.load().network_allowed:
            self.status.setText(f"Downloads are off. {NETWORK_OFF_HINT}")
            return
        if self._fetch is not None and self._fetch.is_running():
            return
        dest = app_paths().data / "tasks"

        def task(call: BackgroundCall) -> Path:
            return fetch_task_set(key, dest, online=True, progress=call.report)

        self._fetch = BackgroundCall(task, "get-tasks", self)
        self._fetch.progress.connect(
            lambda f, m: self.status.setText(f"Downloading {STANDARD_SETS[key].title}: {f:.0%} {m}")
        )
        self._fetch.finished.connect(self._on_fetched)
        self._fetch.failed.connect(lambda message: self.status.setText(message))
        self.get_tasks.setEnabled(False)
        self._fetch.finished.connect(lambda _p: self.get_tasks.setEnabled(True))
        self._fetch.failed.connect(lambda _m: self.get_tasks.setEnabled(True))
        self._fetch.start()

    def _on_fetched(self, path: object) -> None:
        self.task_file.set_text(str(path))
        self.status.setText(f"Task file ready: {path}")

    def _detect_task_kind(self, path: str) -> None:
        """Show the task file's format next to it (read from its content)."""
        from qtapp.core.errors import QuantLensError
        from qtapp.core.evaluate.tasks import KIND_NAMES, detect_task_kind

        self.task_kind = None
        self.task_kind_label.setToolTip("")
        if not path:
            self.task_kind_label.setText("")
            return
        try:
            self.task_kind = detect_task_kind(path)
        except QuantLensError as exc:
            self.task_kind_label.setText("unknown format")
            self.task_kind_label.setToolTip(f"{exc.message} {exc.hint}")
            return
        self.task_kind_label.setText(KIND_NAMES[self.task_kind])

    def _add_models(self) -> None:
        if os.environ.get("QUANTLENS_NO_DIALOGS"):
            return
        chosen, _ = QFileDialog.getOpenFileNames(self, "Models to evaluate", "", GGUF_FILTER)
        for c in chosen:
            self.add_model(Path(c))

    def _remove_selected(self) -> None:
        for item in self.models.selectedItems():
            self.models.takeItem(self.models.row(item))

    # -- state -----------------------------------------------------------------------------
    def set_running(self, running: bool) -> None:
        self.start_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)

    def refresh_cache_size(self) -> None:
        self.cache_label.setText(f"Base-model cache: {human_bytes(cache_size())}")

    def _clear_cache(self) -> None:
        freed = clear_cache()
        self.refresh_cache_size()
        self.status.setText(f"Cleared {human_bytes(freed)} of cached base probabilities.")
