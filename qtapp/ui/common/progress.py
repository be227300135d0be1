"""A progress bar that never paints inside ``setValue``."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QWidget


class ProgressBar(QProgressBar):
    """``QProgressBar.setValue`` repaints at once (``QWidget::repaint``), from inside the slot
    that reports progress: with frequent reports the event loop spends its time painting. Here
    a new value only schedules a paint, which Qt coalesces with the window's other updates."""

    def setValue(self, value: int) -> None:  # noqa: N802 - Qt override
        if value == self.value():
            return
        self.setUpdatesEnabled(False)  # repaint() does nothing while updates are off...
        try:
            super().setValue(value)
        finally:
            self.setUpdatesEnabled(True)  # ...and turning them on schedules an update()


def progress_row(on_cancel: Callable[[], object]) -> tuple[QWidget, ProgressBar, QPushButton]:
    """A job's progress bar (per mille) with its Cancel button, in a row hidden until it runs."""
    bar = ProgressBar()
    bar.setRange(0, 1000)
    bar.setTextVisible(True)
    cancel = QPushButton("Cancel")
    cancel.setToolTip("Stop now; no file is left behind")
    cancel.clicked.connect(on_cancel)
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(bar, 1)
    lay.addWidget(cancel)
    row.hide()
    return row, bar, cancel
