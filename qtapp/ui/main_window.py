"""The main window: a navigation list on the left, one page at a time on the right."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import (
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
    QPixmap,
    QShortcut,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QVBoxLayout,
    QWidget,
)

from qtapp import __version__
from qtapp.ui.common.context import AppContext
from qtapp.ui.common.page_stack import PageStack
from qtapp.ui.menus import install_menus

#: (key, module with ``Page(ctx)``) in the order of the navigation list: one folder per page
PAGES: list[tuple[str, str]] = [
    (key, f"qtapp.ui.{key}.page")
    for key in (
        "welcome",
        "hardware",
        "models",
        "find",
        "fit",
        "quantize",
        "evaluate",
        "compare",
        "settings",
    )
]

log = logging.getLogger(__name__)
#: files the window takes when dropped: models, and task files for the Evaluate page
DROPPABLE = (".gguf", ".txt", ".csv", ".bin")


class MainWindow(QMainWindow):
    def __init__(self, ctx: AppContext | None = None) -> None:
        super().__init__()
        self.ctx = ctx or AppContext(parent=self)
        self.setWindowTitle(f"QuantLens {__version__}")
        self.setAcceptDrops(True)
        self.nav = QListWidget()
        self.nav.setObjectName("nav")
        self.nav.setFixedWidth(170)
        self.stack = PageStack()
        self.pages: dict[str, QWidget] = {}
        self._pages_laid_out = False
        for index, (key, module_name) in enumerate(PAGES):
            module = importlib.import_module(module_name)
            page = module.Page(self.ctx)
            self.pages[key] = page
            self.stack.addWidget(page)
            item = QListWidgetItem(page.title)
            item.setData(Qt.ItemDataRole.UserRole, key)
            self.nav.addItem(item)
            if index < 9:
                shortcut = QShortcut(QKeySequence(f"Ctrl+{index + 1}"), self)
                shortcut.activated.connect(lambda k=key: self.show_page(k))
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        self._fit_nav_height()
        # the left column: the navigation list, and below it the demo tour's card when it runs
        # (there, not under the pages: the pages never change size after the first layout, so
        # a page switch never pays a relayout of its charts)
        side = QFrame()
        side.setObjectName("side")
        side.setFixedWidth(170)
        self.side_layout = QVBoxLayout(side)
        self.side_layout.setContentsMargins(0, 0, 0, 10)
        self.side_layout.setSpacing(8)
        self.side_layout.addWidget(self.nav)
        self.side_layout.addStretch(1)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(side)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.ctx.navigate.connect(self.show_page)
        # made now, not with the first message: a status bar appearing later shrank every page
        # by its height, and each chart of the shown one was laid out and drawn again
        status_bar = self.statusBar()
        self.ctx.status.connect(lambda text: status_bar.showMessage(text, 8000))
        self.ctx.model_changed.connect(
            lambda p: self.setWindowTitle(f"{Path(p).name} — QuantLens {__version__}")
        )
        # the Welcome page greets a first run; after that the window opens on the hardware view
        from qtapp.core.app.settings import Settings

        self.show_page("hardware" if Settings.load().first_run_done else "welcome")
        install_menus(self)  # File (Open, Recent, Quit), Help (About): qtapp/ui/menus.py
        self._restore_geometry()

    def show_page(self, key: str) -> None:
        keys = [k for k, _ in PAGES]
        if key in keys:
            self.nav.setCurrentRow(keys.index(key))

    def _fit_nav_height(self) -> None:
        """The list as tall as its items, so a side panel sits right under it."""
        self.nav.ensurePolished()
        rows = sum(self.nav.sizeHintForRow(i) for i in range(self.nav.count()))
        margins = self.nav.contentsMargins()
        self.nav.setFixedHeight(rows + margins.top() + margins.bottom() + 2 * self.nav.spacing())

    def add_side_panel(self, panel: QWidget) -> None:
        """A narrow panel under the navigation list (the demo tour's card)."""
        holder = QHBoxLayout()
        holder.setContentsMargins(8, 0, 8, 0)
        holder.addWidget(panel)
        self.side_layout.insertLayout(self.side_layout.count() - 1, holder)

    def current_page_key(self) -> str:
        return PAGES[self.stack.currentIndex()][0]

    def open_model(self, path: str | Path) -> None:
        self.ctx.open_model(path)
        self.show_page("fit")

    def start_demo(self) -> None:
        page = self.pages.get("welcome")
        starter = getattr(page, "start_demo", None)
        if callable(starter):
            starter()

    # -- drag and drop a GGUF or a task file anywhere onto the window ---------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt override
        urls = event.mimeData().urls()
        if urls and any(u.toLocalFile().lower().endswith(DROPPABLE) for u in urls):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt override
        for url in event.mimeData().urls():
            path = url.toLocalFile()
            if path.lower().endswith(".gguf"):
                self.open_model(path)
                event.acceptProposedAction()
                return
            if path.lower().endswith(DROPPABLE) and self.open_task_file(path):
                event.acceptProposedAction()
                return

    def open_task_file(self, path: str | Path) -> bool:
        """A HellaSwag, Winogrande or multiple-choice file: the Evaluate page's task file."""
        from qtapp.core.errors import QuantLensError
        from qtapp.core.evaluate.tasks import KIND_NAMES, detect_task_kind

        try:
            kind = detect_task_kind(path)
        except QuantLensError as exc:
            self.ctx.status.emit(f"{Path(path).name} is not a task file: {exc.message}")
            return False
        controls = getattr(self.pages.get("evaluate"), "controls", None)
        field = getattr(controls, "task_file", None)
        if field is None:
            return False
        field.set_text(str(path))
        self.show_page("evaluate")
        self.ctx.status.emit(f"Task file: {Path(path).name} ({KIND_NAMES[kind]})")
        return True

    # -- geometry and shutdown ---------------------------------------------------------------
    def _restore_geometry(self) -> None:
        geometry = self._qsettings().value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 820)

    def _qsettings(self) -> QSettings:
        """Window geometry only; it lives in the config folder so QUANTLENS_HOME redirects it."""
        return QSettings(str(self.ctx.paths.config / "window.ini"), QSettings.Format.IniFormat)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._pages_laid_out:
            self._pages_laid_out = True
            self._lay_out_hidden_pages()

    def _lay_out_hidden_pages(self) -> None:
        """Lay out and paint every page once, off screen, while the window first appears.

        A page's first show costs its first layout and its charts' first paint (pyqtgraph:
        50-230 ms on a software renderer); paid here, a page switch later, possibly while a job
        keeps the cores busy, costs only a repaint."""
        self.centralWidget().layout().activate()
        size = self.stack.size()
        for page in self.pages.values():
            if page is self.stack.currentWidget():
                continue
            page.resize(size)
            page.render(QPixmap(size))  # sends the pending resize events, then paints

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self._qsettings().setValue("window/geometry", self.saveGeometry())
        for page in self.pages.values():
            closer = getattr(page, "shutdown", None)
            if callable(closer):
                closer()
        self.ctx.jobs.shutdown()
        super().closeEvent(event)
