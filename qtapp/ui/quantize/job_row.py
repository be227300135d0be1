"""One quantize job in the job list: progress by bytes, tensor, elapsed, ETA, MB/s, Cancel."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QWidget,
)

from qtapp.core.jobs.events import Cancelled, Event, Failed, Finished, Progress
from qtapp.ui.common.progress import ProgressBar

STATE_COLORS = {
    "queued": "#777",
    "running": "#2a7de1",
    "finished": "#2e8b57",
    "failed": "#c0392b",
    "cancelled": "#a66300",
}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


class JobRow(QFrame):
    """Shows one job's state; ``cancel_requested``/``evaluate_requested`` go to the page."""

    cancel_requested = Signal(object)
    evaluate_requested = Signal(str)
    remove_requested = Signal(object)

    def __init__(self, target: str, out_path: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.target = target
        self.out_path = out_path
        self.state = "queued"
        self.result: dict[str, object] = {}
        self.message = ""
        grid = QGridLayout(self)
        grid.setContentsMargins(10, 6, 10, 6)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        self.title = QLabel(f"<b>{target}</b>  →  {Path(out_path).name}")
        self.title.setToolTip(out_path)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.state_label = QLabel()
        self.state_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.bar = ProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setValue(0)
        self.bar.setFormat("queued")
        self.bar.setMinimumWidth(200)
        self.tensor_label = QLabel(" ")
        self.tensor_label.setObjectName("muted")
        self.tensor_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.stats_label = QLabel(" ")
        self.stats_label.setObjectName("muted")
        self.stats_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop this job now; no file is left behind")
        self.cancel_button.clicked.connect(lambda: self.cancel_requested.emit(self))
        self.evaluate_button = QPushButton("Evaluate…")
        self.evaluate_button.setToolTip("Measure this quant's quality and speed")
        self.evaluate_button.clicked.connect(lambda: self.evaluate_requested.emit(self.out_path))
        self.evaluate_button.hide()
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove this row from the list (the file stays)")
        self.remove_button.clicked.connect(lambda: self.remove_requested.emit(self))
        self.remove_button.hide()
        grid.addWidget(self.title, 0, 0, 1, 2)
        grid.addWidget(self.state_label, 0, 2)
        buttons = QHBoxLayout()
        buttons.setSpacing(6)
        for button in (self.evaluate_button, self.cancel_button, self.remove_button):
            buttons.addWidget(button)
        grid.addLayout(buttons, 0, 3, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.bar, 1, 0, 1, 4)
        grid.addWidget(self.tensor_label, 2, 0, 1, 2)
        grid.addWidget(self.stats_label, 2, 2, 1, 2)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(2, 1)
        self._set_state("queued")

    # -- updates -----------------------------------------------------------------------------
    def _set_state(self, state: str, text: str | None = None) -> None:
        self.state = state
        color = STATE_COLORS.get(state, "#777")
        self.state_label.setText(
            f"<span style='color:{color}; font-weight:600'>{text or state.capitalize()}</span>"
        )
        done = state in ("finished", "failed", "cancelled")
        self.cancel_button.setVisible(not done)
        self.remove_button.setVisible(done)
        self.evaluate_button.setVisible(state == "finished")

    def on_started(self) -> None:
        self._set_state("running")
        self.bar.setFormat("starting…")

    def on_event(self, event: Event) -> None:
        if not isinstance(event, Progress):
            return
        if self.state == "queued":
            self._set_state("running")
        d = event.detail
        self.bar.setValue(int(event.fraction * 1000))
        if d.get("phase") in ("dry_run", "imatrix"):
            self.bar.setFormat(event.message)
            return
        total = d.get("total_bytes")
        if total:
            self.bar.setFormat(
                f"%p%   {d.get('done_bytes', 0) / 2**20:.1f} of {total / 2**20:.1f} MiB"
            )
        tensor = d.get("tensor") or ""
        if tensor:
            self.tensor_label.setText(f"{tensor}  ({d.get('index', 0)}/{d.get('count', 0)})")
        self.stats_label.setText(
            f"elapsed {_duration(d.get('elapsed'))} · ETA {_duration(d.get('eta'))}"
            f" · {d.get('mb_per_s', 0.0):.1f} MB/s"
        )

    def on_done(self, event: Event) -> None:
        if isinstance(event, Finished):
            self.result = dict(event.result)
            size = float(self.result.get("bytes", 0)) / 2**20  # type: ignore[arg-type]
            secs = float(self.result.get("seconds", 0.0))  # type: ignore[arg-type]
            bpw = self.result.get("bpw")
            self.bar.setValue(1000)
            self.bar.setFormat(f"done: {size:.1f} MiB" + (f", {bpw:.2f} bpw" if bpw else ""))
            self.tensor_label.setText(str(self.result.get("path", self.out_path)))
            rate = size * 1.048576 / max(secs, 1e-3)
            self.stats_label.setText(f"took {secs:.1f}s · {rate:.1f} MB/s")
            self._set_state("finished")
        elif isinstance(event, Cancelled):
            self.bar.setFormat("cancelled")
            self.tensor_label.setText("Cancelled; no file was left behind.")
            self._set_state("cancelled")
        elif isinstance(event, Failed):
            self.message = event.message
            self.bar.setFormat("failed")
            self.tensor_label.setText(
                f"<span style='color:#c0392b'>{event.message}</span><br>{event.hint}"
            )
            self.tensor_label.setToolTip(f"{event.message}\n{event.hint}")
            self.tensor_label.setWordWrap(True)
            self.stats_label.setText("")
            self._set_state("failed")

    def mark_cancelled_before_start(self) -> None:
        self.on_done(Cancelled())

    @property
    def done(self) -> bool:
        return self.state in ("finished", "failed", "cancelled")
