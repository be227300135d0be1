"""The Welcome page: what QuantLens does, the demo button, open a model, recent models."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.app.paths import resources_dir
from qtapp.core.app.settings import Settings
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.context import AppContext
from qtapp.ui.common.progress import ProgressBar
from qtapp.ui.welcome.demo_tour import DemoTour

log = logging.getLogger(__name__)

WHAT_IT_DOES = (
    ("Will it fit?", "See which quantization of a model fits your GPUs (or RAM), at your context."),
    ("What does it cost?", "Quantize, then measure quality (perplexity, KL divergence) and speed."),
    (
        "Which one?",
        "Compare size against quality side by side, and pick with numbers, not guesses.",
    ),
)


def gguf_file_filter() -> str:
    return "GGUF models (*.gguf);;All files (*)"


class Page(QWidget):
    key = "welcome"
    title = "Welcome"

    demo_ready = Signal(object)  # Path of the demo model, once it is open and the tour runs

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._assembler: BackgroundCall | None = None
        self.tour = None  # qtapp.ui.welcome.demo_tour.DemoTour while the demo runs

        outer = QVBoxLayout(self)
        outer.setContentsMargins(48, 36, 48, 28)
        outer.setSpacing(18)

        header = QHBoxLayout()
        header.setSpacing(16)
        logo = QLabel()
        icon_file = resources_dir() / "icons" / "quantlens.svg"
        if icon_file.exists():
            logo.setPixmap(QIcon(str(icon_file)).pixmap(72, 72))
        header.addWidget(logo)
        titles = QVBoxLayout()
        title = QLabel("QuantLens")
        title.setStyleSheet("font-size: 26pt; font-weight: 700;")
        subtitle = QLabel("Which llama.cpp quantization fits your GPUs, and what it costs.")
        subtitle.setObjectName("muted")
        subtitle.setStyleSheet("font-size: 12pt;")
        titles.addWidget(title)
        titles.addWidget(subtitle)
        header.addLayout(titles, 1)
        outer.addLayout(header)

        cards = QHBoxLayout()
        cards.setSpacing(14)
        for heading, text in WHAT_IT_DOES:
            card = QFrame()
            card.setObjectName("card")
            lay = QVBoxLayout(card)
            lay.setContentsMargins(16, 14, 16, 14)
            h = QLabel(heading)
            h.setStyleSheet("font-size: 12pt; font-weight: 600;")
            t = QLabel(text)
            t.setWordWrap(True)
            lay.addWidget(h)
            lay.addWidget(t)
            lay.addStretch(1)
            cards.addWidget(card, 1)
        outer.addLayout(cards)

        actions = QHBoxLayout()
        actions.setSpacing(12)
        self.demo_button = QPushButton("Try it with the demo model")
        self.demo_button.setObjectName("primary")
        self.demo_button.setMinimumHeight(48)
        self.demo_button.setToolTip(
            "Gemma 3 270M (253 MB, installed with QuantLens): a guided tour of hardware, fit, "
            "quantize, evaluate and compare. Runs on a CPU, no network needed."
        )
        self.demo_button.clicked.connect(self.start_demo)
        self.open_button = QPushButton("Open a model…")
        self.open_button.setObjectName("secondary")
        self.open_button.setToolTip(
            "Open a GGUF file (Ctrl+O). You can also drop one on the window."
        )
        self.open_button.clicked.connect(self.choose_model)
        self.find_button = QPushButton("Find models on this computer")
        self.find_button.setObjectName("secondary")
        self.find_button.setToolTip(
            "List GGUF files in the Hugging Face cache, LM Studio, llama.cpp's cache, Ollama "
            "and your own folders."
        )
        self.find_button.clicked.connect(lambda: self.ctx.navigate.emit("models"))
        self.hub_button = QPushButton("Find a model on Hugging Face")
        self.hub_button.setObjectName("secondary")
        self.hub_button.setToolTip(
            "Plan a Hugging Face repo's GGUF files from their headers, see which fits your "
            "GPUs, and download that one (needs 'Allow downloads' in Settings)."
        )
        self.hub_button.clicked.connect(lambda: self.ctx.navigate.emit("find"))
        actions.addWidget(self.demo_button)
        actions.addWidget(self.open_button)
        actions.addWidget(self.find_button)
        actions.addWidget(self.hub_button)
        actions.addStretch(1)
        outer.addLayout(actions)
        caption = QLabel(
            "The demo uses Gemma 3 270M, installed with QuantLens, and needs no network: "
            "quantizing takes under a minute on a CPU, measuring quality and speed a few "
            "minutes more. Or drop a .gguf file anywhere on this window."
        )
        caption.setObjectName("muted")
        caption.setWordWrap(True)
        outer.addWidget(caption)

        self.progress = ProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedHeight(8)
        self.progress.hide()
        self.status = QLabel("")
        self.status.setObjectName("muted")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.progress)
        outer.addWidget(self.status)

        recent_title = QLabel("Recent models")
        recent_title.setStyleSheet("font-size: 12pt; font-weight: 600;")
        outer.addWidget(recent_title)
        self.recent = QListWidget()
        self.recent.setObjectName("recent")
        self.recent.setMaximumHeight(260)
        self.recent.setToolTip("Double-click to open")
        self.recent.itemActivated.connect(self._open_recent)
        outer.addWidget(self.recent)
        outer.addStretch(1)
        self.refresh_recent()
        ctx.model_changed.connect(self._remember)

    def showEvent(self, event) -> None:  # type: ignore[no-untyped-def]  # noqa: N802 - Qt
        super().showEvent(event)
        settings = Settings.load()
        if not settings.first_run_done:
            settings.first_run_done = True
            settings.save()

    # -- recent models -------------------------------------------------------------------------
    def _remember(self, path: Path) -> None:
        """Every opened model goes to the top of the recent list (kept in the settings file)."""
        if path is not None and Path(path).exists():
            settings = Settings.load()
            settings.add_recent(str(Path(path).absolute()))
            settings.save()
        self.refresh_recent()

    def refresh_recent(self) -> None:
        self.recent.clear()
        models = Settings.load().recent_models
        for model in models:
            path = Path(model)
            item = QListWidgetItem(f"{path.name}\n{path.parent}")
            item.setData(Qt.ItemDataRole.UserRole, model)
            if not path.exists():
                item.setForeground(self.palette().placeholderText())
                item.setText(f"{path.name}   (no longer there)\n{path.parent}")
                item.setToolTip("This file is no longer there")
            else:
                item.setToolTip(model)
            self.recent.addItem(item)
        if not models:
            item = QListWidgetItem("No models opened yet: try the demo, or open a GGUF file.")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.recent.addItem(item)

    def _open_recent(self, item: QListWidgetItem) -> None:
        model = item.data(Qt.ItemDataRole.UserRole)
        if not model:
            return
        if not Path(model).exists():
            self.status.setText(f"{model} is no longer there. Open it again from its new place.")
            return
        self._open(model)

    def choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a GGUF model", str(Path.home()), gguf_file_filter()
        )
        if path:
            self._open(path)

    def _open(self, path: str | Path) -> None:
        self.ctx.open_model(path)
        self.ctx.navigate.emit("fit")

    # -- the demo ------------------------------------------------------------------------------
    def start_demo(self) -> None:
        """Unpack the demo model in the background, open it, then start the tour."""
        if self._assembler is not None and self._assembler.is_running():
            return
        from qtapp.core.app import demo

        self.demo_button.setEnabled(False)
        self.progress.setValue(0)
        self.progress.show()
        self.status.setText("Preparing the demo model (Gemma 3 270M, 253 MB)…")

        def task(call: BackgroundCall) -> Path:
            return demo.demo_model_path(progress=call.report)  # looked up now: tests replace it

        self._assembler = BackgroundCall(task, "demo-model", self)
        self._assembler.progress.connect(self._on_progress)
        self._assembler.finished.connect(self._on_demo_ready)
        self._assembler.failed.connect(self._on_demo_failed)
        self._assembler.start()

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.status.setText(f"{message}… {fraction:.0%}")

    def _on_demo_ready(self, path: Path) -> None:
        self.progress.hide()
        self.demo_button.setEnabled(True)
        self.status.setText(f"Demo model ready: {path}")
        self.ctx.open_model(path)
        # the tour on the next turn of the event loop: every page's answer to the new model,
        # then the tour's card and first page, each in a turn of its own (one turn: 270 ms)
        QTimer.singleShot(0, lambda: self._start_tour(Path(path)))

    def _start_tour(self, path: Path) -> None:
        if self.tour is not None:
            self.tour.close()
        self.tour = DemoTour(self.ctx, path, self.window())
        # its first page in the next turn: the card and the page switch were one turn of
        # 15-19 ms of CPU (a 55-59 ms stall on busy cores)
        QTimer.singleShot(0, self, lambda tour=self.tour: self._show_tour(tour, path))

    def _show_tour(self, tour: DemoTour, path: Path) -> None:
        if tour is not self.tour or tour.closed:  # replaced or ended in between
            return
        tour.start()
        self.demo_ready.emit(path)

    def _on_demo_failed(self, message: str) -> None:
        self.progress.hide()
        self.demo_button.setEnabled(True)
        self.status.setText(f"The demo model could not be prepared: {message}")
        self.ctx.status.emit("Demo failed: " + message)

    def shutdown(self) -> None:
        if self._assembler is not None:
            self._assembler.cancel()
            self._assembler.wait()
        if self.tour is not None:
            self.tour.close()
