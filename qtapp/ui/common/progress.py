"""A progress bar that never paints inside ``setValue``."""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar


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
