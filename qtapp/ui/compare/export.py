"""The Compare page's Export menu: table as CSV / JSON / Markdown, the HTML report, each chart
as PNG or SVG. File writing is :mod:`qtapp.core.results.report`'s; this only asks where."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox, QPushButton

from qtapp.core.errors import QuantLensError
from qtapp.core.results.report import export, write_export

log = logging.getLogger(__name__)


class ExportSource(Protocol):
    """What the menu exports: the Compare page, seen only through what it shows."""

    rows: Any
    runs: Any
    ctx: Any

    def budget(self) -> Any: ...

    def quality_metric(self) -> str: ...

    def chart(self, which: str) -> Any: ...


TABLE_FORMATS = {
    "csv": ("CSV table", "CSV (*.csv)", ".csv"),
    "json": ("JSON (table, metrics, settings)", "JSON (*.json)", ".json"),
    "md": ("Markdown table (forum post)", "Markdown (*.md)", ".md"),
    "html": ("HTML report with charts", "HTML (*.html)", ".html"),
}
CHARTS = {"quality": "Quality chart", "speed": "Speed chart", "curves": "Curves chart"}


class ExportButton(QPushButton):
    def __init__(self, page: ExportSource) -> None:
        super().__init__("Export ▾")
        self.page = page
        self.setToolTip("Save the table, a report or a chart")
        menu = QMenu(self)
        for fmt, (title, _f, _s) in TABLE_FORMATS.items():
            menu.addAction(title + "…", lambda f=fmt: self.export_to(f))
        menu.addAction("Copy Markdown table", self.copy_markdown)
        menu.addSeparator()
        for key, title in CHARTS.items():
            menu.addAction(f"{title} as PNG…", lambda k=key: self.export_chart(k, ".png"))
            menu.addAction(f"{title} as SVG…", lambda k=key: self.export_chart(k, ".svg"))
        self.setMenu(menu)

    def text_for(self, fmt: str) -> str:
        budget, _note = self.page.budget()
        return export(self.page.rows, fmt, self.page.runs, self.page.quality_metric(), budget)

    def _ask(self, title: str, name: str, filters: str) -> Path | None:
        start = str(Path.home() / name)
        path, _sel = QFileDialog.getSaveFileName(self, title, start, filters)
        return Path(path) if path else None

    def export_to(self, fmt: str, path: str | Path | None = None) -> Path | None:
        title, filters, suffix = TABLE_FORMATS[fmt]
        target = Path(path) if path else self._ask(f"Export {title}", f"quantlens{suffix}", filters)
        if target is None:
            return None
        try:
            write_export(target, self.text_for(fmt))
        except QuantLensError as exc:
            self._fail(str(exc))
            return None
        self.page.ctx.status.emit(f"Exported {len(self.page.rows)} runs to {target}")
        return target

    def copy_markdown(self) -> None:
        QGuiApplication.clipboard().setText(self.text_for("md"))
        self.page.ctx.status.emit("Markdown table copied: paste it into a forum post")

    def export_chart(self, which: str, suffix: str, path: str | Path | None = None) -> Path | None:
        chart = self.page.chart(which)
        filters = "SVG (*.svg)" if suffix == ".svg" else "PNG (*.png)"
        target = (
            Path(path)
            if path
            else self._ask(f"Export {CHARTS[which]}", f"quantlens-{which}{suffix}", filters)
        )
        if target is None:
            return None
        try:
            chart.export_image(target)
        except Exception as exc:  # noqa: BLE001 - pyqtgraph raises several kinds
            log.warning("chart export failed: %s", exc)
            self._fail(f"Could not write {target}: {exc}")
            return None
        self.page.ctx.status.emit(f"Saved {CHARTS[which].lower()} to {target}")
        return target

    def _fail(self, message: str) -> None:
        log.warning("%s", message)
        self.page.ctx.status.emit(message)
        if not _no_dialogs():
            QMessageBox.warning(self, "Export failed", message)


def _no_dialogs() -> bool:
    import os

    return bool(os.environ.get("QUANTLENS_NO_DIALOGS"))
