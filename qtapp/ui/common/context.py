"""State the pages share, and the signals that tell them it changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from qtapp.core.app.paths import AppPaths, app_paths
from qtapp.ui.common.workers import JobManager


class AppContext(QObject):
    """One per window. Pages read it and listen to it; they never reach into each other."""

    model_changed = Signal(object)  # Path of the opened model (first shard for split files)
    hardware_changed = Signal(object)  # qtapp.core.hardware.probe.HardwareReport
    results_changed = Signal()  # the results store has new or changed runs
    navigate = Signal(str)  # ask the window to show a page by its key
    status = Signal(str)  # a line for the status bar

    def __init__(self, paths: AppPaths | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = paths or app_paths()
        self.jobs = JobManager(self)
        self.model_path: Path | None = None
        self.hardware: Any = None
        self.extras: dict[str, Any] = {}

    def open_model(self, path: str | Path) -> None:
        self.model_path = Path(path)
        self.model_changed.emit(self.model_path)

    def set_hardware(self, report: Any) -> None:
        self.hardware = report
        self.hardware_changed.emit(report)
