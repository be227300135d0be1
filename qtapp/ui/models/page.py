"""The Models page: every GGUF found on this computer, scanned in the background."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QShowEvent, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.app import discovery
from qtapp.core.app.discovery import Location, ModelHit, ScanResult
from qtapp.core.app.glossary import explain_quant
from qtapp.core.app.settings import Settings
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.context import AppContext

log = logging.getLogger(__name__)

COLUMNS = ("Name", "Architecture", "Size", "Quant type", "Source", "Path")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
PATH_ROLE = Qt.ItemDataRole.UserRole + 2
QUANTLENS_SOURCE = "QuantLens"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


class Page(QWidget):
    key = "models"
    title = "Models"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        #: overrides for tests: where "home" is and which environment to read
        self.scan_home: Path | None = None
        self.scan_env: Mapping[str, str] | None = None
        self._scan: BackgroundCall | None = None
        self._scanned_once = False
        self.last_result: ScanResult | None = None

        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 20, 24, 16)
        outer.setSpacing(10)
        title = QLabel("Models on this computer")
        title.setObjectName("pageTitle")
        intro = QLabel(
            "GGUF files in the Hugging Face cache, LM Studio, llama.cpp's cache, Ollama, "
            "QuantLens's own folder and the folders you add. Double-click one to open it."
        )
        intro.setObjectName("muted")
        intro.setWordWrap(True)
        outer.addWidget(title)
        outer.addWidget(intro)

        bar = QHBoxLayout()
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter by name, architecture, type, source or path")
        self.filter.setClearButtonEnabled(True)
        self.add_button = QPushButton("Add folder…")
        self.add_button.setToolTip("Also look in a folder of your own (kept in the settings)")
        self.add_button.clicked.connect(self.choose_folder)
        self.rescan_button = QPushButton("Rescan")
        self.rescan_button.setToolTip("Look again (F5)")
        self.rescan_button.setShortcut("F5")
        self.rescan_button.clicked.connect(self.rescan)
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Open the selected model (Enter)")
        self.open_button.clicked.connect(self.open_selected)
        self.hub_button = QPushButton("Find on Hugging Face…")
        self.hub_button.setToolTip(
            "Plan a Hugging Face repo's GGUF files before downloading one (the Find a model page)"
        )
        self.hub_button.clicked.connect(lambda: self.ctx.navigate.emit("find"))
        bar.addWidget(self.filter, 1)
        bar.addWidget(self.hub_button)
        bar.addWidget(self.add_button)
        bar.addWidget(self.rescan_button)
        bar.addWidget(self.open_button)
        outer.addLayout(bar)

        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(28)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col, width in enumerate((420, 110, 90, 100, 120)):
            self.table.setColumnWidth(col, width)
        self.table.doubleClicked.connect(self._open_index)
        self.table.activated.connect(self._open_index)
        outer.addWidget(self.table, 1)

        self.status = QLabel("Not scanned yet.")
        self.status.setObjectName("muted")
        self.status.setWordWrap(True)
        outer.addWidget(self.status)

    # -- scanning ------------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._scanned_once:
            self.rescan()

    def locations(self) -> list[Location]:
        settings = Settings.load()
        locs = discovery.default_locations(self.scan_home, self.scan_env, settings.extra_model_dirs)
        own = [Location(QUANTLENS_SOURCE, self.ctx.paths.models)]
        if Path(settings.output_dir) != self.ctx.paths.models:
            own.append(Location(QUANTLENS_SOURCE, Path(settings.output_dir)))
        return locs + own

    def is_scanning(self) -> bool:
        return self._scan is not None and self._scan.is_running()

    def rescan(self) -> None:
        if self.is_scanning():
            return
        self._scanned_once = True
        self.model.removeRows(0, self.model.rowCount())
        locations = self.locations()
        self.status.setText(f"Scanning {len(locations)} locations…")
        self.rescan_button.setEnabled(False)

        def task(call: BackgroundCall) -> ScanResult:
            return discovery.scan(locations, should_stop=call.should_stop, on_hit=call.emit_item)

        self._scan = BackgroundCall(task, "scan-models", self)
        self._scan.item.connect(self._add_hit)
        self._scan.finished.connect(self._scan_done)
        self._scan.failed.connect(self._scan_failed)
        self._scan.start()

    def _add_hit(self, hit: ModelHit) -> None:
        cells = [
            (hit.name, hit.name.lower()),
            (hit.architecture or "?", hit.architecture or ""),
            (human_size(hit.size), hit.size),
            (hit.file_type or "—", hit.file_type or ""),
            (hit.source, hit.source),
            (str(hit.path), str(hit.path)),
        ]
        items = []
        for text, sort_key in cells:
            item = QStandardItem(text)
            item.setData(sort_key, SORT_ROLE)
            item.setData(str(hit.path), PATH_ROLE)
            item.setToolTip(hit.error or str(hit.path))
            if hit.error:
                item.setForeground(Qt.GlobalColor.darkYellow)
            items.append(item)
        items[2].setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if hit.shards > 1:
            items[0].setText(f"{hit.name}  ({hit.shards} parts)")
            items[0].setToolTip(hit.error or f"{hit.path}\nand {hit.shards - 1} more part(s)")
        if hit.file_type:
            items[3].setToolTip(explain_quant(hit.file_type) or hit.file_type)
        if hit.error:
            items[0].setText(f"⚠ {items[0].text()}")
        self.model.appendRow(items)

    def _scan_done(self, result: ScanResult) -> None:
        self.last_result = result
        self.rescan_button.setEnabled(True)
        count = len(result.hits)
        text = f"Found {count} model{'s' if count != 1 else ''}."
        if result.cancelled:
            text = f"Scan stopped; {count} found so far."
        broken = sum(1 for h in result.hits if h.error)
        if broken:
            text += f" {broken} marked ⚠ cannot be opened (hover over it to see why)."
        if result.skipped:
            text += f" Skipped {len(result.skipped)} unreadable place(s) (hover for details)."
            self.status.setToolTip("\n".join(result.skipped[:30]))
        if count == 0:
            text += " Add a folder that holds .gguf files, or try the demo on the Welcome page."
        self.status.setText(text)
        for line in result.skipped:
            log.info("Model scan skipped %s", line)

    def _scan_failed(self, message: str) -> None:
        self.rescan_button.setEnabled(True)
        self.status.setText(f"The scan failed: {message}")

    # -- actions -------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder with GGUF models")
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str | Path) -> None:
        settings = Settings.load()
        text = str(Path(folder).expanduser())
        if text not in settings.extra_model_dirs:
            settings.extra_model_dirs.append(text)
            settings.save()
        self.rescan()

    def _open_index(self, index: QModelIndex) -> None:
        path = index.data(PATH_ROLE)
        if path:
            self.ctx.open_model(Path(path))
            self.ctx.navigate.emit("fit")

    def open_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self._open_index(rows[0])

    def shutdown(self) -> None:
        if self._scan is not None:
            self._scan.cancel()
            self._scan.wait()
