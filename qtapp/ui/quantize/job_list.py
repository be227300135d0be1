"""The list of job rows under the Quantize page: a header with counts, Clear finished, rows."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from qtapp.ui.quantize.job_row import JobRow


class JobList(QWidget):
    """Owns the :class:`JobRow` widgets; ``row_removed`` fires with a row it dropped."""

    row_removed = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[JobRow] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        self.label = QLabel("<b>Jobs</b>")
        self.clear_button = QPushButton("Clear finished")
        self.clear_button.setToolTip("Remove ended jobs from the list (their files stay)")
        self.clear_button.clicked.connect(self.clear_finished)
        head.addWidget(self.label)
        head.addStretch(1)
        head.addWidget(self.clear_button)
        lay.addLayout(head)
        host = QWidget()
        self._layout = QVBoxLayout(host)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.addStretch(1)
        self.empty_label = QLabel("No jobs yet. Tick targets above and press Queue.")
        self.empty_label.setObjectName("muted")
        self._layout.insertWidget(0, self.empty_label)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(host)
        lay.addWidget(scroll, 1)

    def add(self, row: JobRow) -> JobRow:
        row.remove_requested.connect(self.remove)
        self.rows.append(row)
        self.empty_label.hide()
        self._layout.insertWidget(self._layout.count() - 1, row)
        self.update_counts()
        return row

    def remove(self, row: JobRow) -> None:
        if not row.done or row not in self.rows:
            return
        self.rows.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.empty_label.setVisible(not self.rows)
        self.update_counts()
        self.row_removed.emit(row)

    def clear_finished(self) -> None:
        for row in [r for r in self.rows if r.done]:
            self.remove(row)

    def update_counts(self) -> None:
        running = sum(r.state == "running" for r in self.rows)
        queued = sum(r.state == "queued" for r in self.rows)
        done = sum(r.done for r in self.rows)
        self.label.setText(f"<b>Jobs</b>  ·  {running} running, {queued} queued, {done} done")
