"""The Quantize page's importance-matrix box: make one for the source model, offer one made before.

"Make importance matrix" queues an ``imatrix`` job (what llama-imatrix computes) on the page's
job queue, with the bundled calibration text unless another is chosen; progress, ETA and an
immediate Cancel show here. Matrices made in the app are kept by the model's fingerprint and
offered automatically when a ticked type needs or benefits from one. A calibration text that
overlaps the evaluation text gets a warning (a quant tuned on its test text looks too good).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.jobs.events import Cancelled, Event, Failed, Finished, Progress
from qtapp.core.quantize.imatrix_jobs import (
    DEFAULT_CHUNKS,
    ImatrixHooks,
    ImatrixOptions,
    default_calibration_text,
    evaluation_text,
    imatrix_need,
    imatrix_spec,
    overlap_warning,
    required_why,
    stored_for,
)
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.progress import progress_row
from qtapp.ui.quantize.options import PathField

log = logging.getLogger(__name__)
WARN_STYLE = "color: #c77700;"


def _duration(seconds: object) -> str:
    if not isinstance(seconds, (int, float)):
        return "–"
    s = max(0, int(round(seconds)))
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


class ImatrixMaker(QGroupBox):
    """Emits ``chosen(path)`` when a matrix should go into the options' imatrix field."""

    chosen = Signal(str)

    def __init__(self, submit: Callable[..., Any], parent: QWidget | None = None) -> None:
        super().__init__("Importance matrix", parent)
        self._submit = submit  # JobManager.submit
        self.model: Path | None = None
        self.stored: list[Path] = []
        self.targets: list[str] = []
        self.current_file = ""  # what the options' imatrix field holds
        self.runner: Any = None
        self.pending_out = ""  # the file the running job will write (already in the field)
        self._calls: list[BackgroundCall] = []
        lay = QVBoxLayout(self)
        self.note = QLabel()
        self.note.setWordWrap(True)
        lay.addWidget(self.note)
        self.text = PathField(
            f"bundled: {default_calibration_text().name}",
            False,
            "Calibration text",
            "Text (*.txt *.raw);;All files (*)",
            clearable=True,
        )
        self.text.setToolTip(
            "The text the model reads to measure which weights matter. The bundled one is "
            "Leviticus and Numbers (KJV); the Evaluate page measures on Genesis and Exodus."
        )
        self.text.changed.connect(lambda _t: self._check_overlap())
        row = QHBoxLayout()
        row.addWidget(QLabel("Text"))
        row.addWidget(self.text, 1)
        lay.addLayout(row)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("Chunks"))
        self.chunks = QSpinBox()
        self.chunks.setRange(0, 100000)
        self.chunks.setValue(DEFAULT_CHUNKS)
        self.chunks.setSpecialValueText("whole text")
        self.chunks.setToolTip("Chunks of 512 tokens to run (llama-imatrix --chunks)")
        row2.addWidget(self.chunks)
        self.make_button = QPushButton("Make importance matrix")
        self.make_button.setToolTip(
            "Run the source model over the calibration text in the background, as llama.cpp's "
            "llama-imatrix does; the result is kept for this model and used here."
        )
        self.make_button.clicked.connect(self.make)
        row2.addStretch(1)
        row2.addWidget(self.make_button)
        lay.addLayout(row2)
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet(WARN_STYLE)
        self.warning.hide()
        lay.addWidget(self.warning)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c0392b;")
        self.error.hide()
        lay.addWidget(self.error)
        self.progress_row, self.bar, self.cancel_button = progress_row(self.cancel)
        lay.addWidget(self.progress_row)
        self._refresh()
        self._check_overlap()

    # -- state from the page ----------------------------------------------------------------
    def set_model(self, path: str | Path | None) -> None:
        self.model = Path(path) if path else None
        self.stored = []
        self._refresh()
        if self.model is None or not self.model.is_file():
            return
        model = self.model
        call = BackgroundCall(lambda _c: (model, stored_for(model)), "imatrix-stored", self)
        call.finished.connect(self._on_stored)
        self._calls = [c for c in self._calls if c is not None][-4:] + [call.start()]

    def _on_stored(self, found: object) -> None:
        model, files = found  # type: ignore[misc]
        if model != self.model:
            return  # another source was chosen meanwhile
        self.stored = list(files)
        self._offer()
        self._refresh()

    def set_targets(self, names: list[str]) -> None:
        self.targets = list(names)
        self._offer()
        self._refresh()

    def set_current_file(self, text: str) -> None:
        self.current_file = text
        self._refresh()

    # -- offering ---------------------------------------------------------------------------
    def _wanting(self) -> tuple[list[str], list[str]]:
        required = [t for t in self.targets if imatrix_need(t) == "required"]
        benefit = [t for t in self.targets if imatrix_need(t) == "benefits"]
        return required, benefit

    def _offer(self) -> None:
        """Put the newest matrix made for this model into the field when a ticked type wants
        one and the field is empty (never replace the user's own choice)."""
        required, benefit = self._wanting()
        if self.stored and not self.current_file and (required or benefit):
            self.chosen.emit(str(self.stored[0]))

    def _refresh(self) -> None:
        required, benefit = self._wanting()
        busy = self.runner is not None
        self.make_button.setEnabled(self.model is not None and not busy)
        parts: list[str] = []
        if self.current_file and busy and self.current_file == self.pending_out:
            parts.append(
                "Making the matrix for this model; quants queued now wait for it and use it."
            )
        elif self.current_file:
            if self.stored and Path(self.current_file) == self.stored[0]:
                parts.append("Using the matrix made in QuantLens for this model.")
        elif required:
            why = required_why(required[0])
            parts.append(
                f"<span style='color:#c0392b'><b>{', '.join(required)} need"
                f"{'s' if len(required) == 1 else ''} an importance matrix.</b></span> {why} "
                "Make one here, or choose a file above."
            )
        elif benefit:
            parts.append(
                f"{', '.join(benefit)} {'is' if len(benefit) == 1 else 'are'} better with an "
                "importance matrix (lower KL divergence)."
            )
        if self.stored and not self.current_file:
            parts.append(f"Made before for this model: {self.stored[0].name}.")
        if not parts:
            parts.append(
                "Tells the quantizer which weights matter most. IQ1/IQ2/IQ3_XXS/IQ3_XS and "
                "Q2_K_S need one; Q2_K to Q4_K and IQ4 gain from one."
            )
        self.note.setText(" ".join(parts))

    # -- the overlap warning ----------------------------------------------------------------
    def calibration_path(self) -> Path:
        return Path(self.text.text()) if self.text.text() else default_calibration_text()

    def _check_overlap(self) -> None:
        calib = self.calibration_path()
        call = BackgroundCall(
            lambda _c: overlap_warning(calib, evaluation_text()), "imatrix-overlap", self
        )
        call.finished.connect(self._show_overlap)
        self._calls = self._calls[-4:] + [call.start()]

    def _show_overlap(self, message: object) -> None:
        text = str(message or "")
        self.warning.setText(f"⚠ {text}" if text else "")
        self.warning.setVisible(bool(text))

    # -- the job ----------------------------------------------------------------------------
    def make(self) -> None:
        if self.model is None or self.runner is not None:
            return
        chunks = self.chunks.value() or None
        opts = ImatrixOptions(text=self.text.text() or None, chunks=chunks)
        spec = imatrix_spec(self.model, None, opts)
        self.progress_row.show()
        self.error.hide()
        self.cancel_button.setEnabled(True)
        self.bar.setValue(0)
        self.bar.setFormat("queued")
        self.runner = self._submit(spec, hooks=ImatrixHooks(spec))
        self.runner.event.connect(self._on_event)
        self.runner.done.connect(self._on_done)
        self.pending_out = str(spec.params["out"])
        if not self.current_file:  # quants queued behind it (one job at a time) will use it
            self.chosen.emit(self.pending_out)
        self._refresh()

    def cancel(self) -> None:
        if self.runner is not None:
            self.cancel_button.setEnabled(False)
            self.bar.setFormat("cancelling…")
            self.runner.cancel()

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, Progress):
            return
        self.bar.setValue(int(event.fraction * 1000))
        d = event.detail
        if d.get("phase") == "imatrix":
            self.bar.setFormat(
                f"%p%  {event.message} · elapsed {_duration(d.get('elapsed'))} · "
                f"ETA {_duration(d.get('eta'))}"
            )
        else:
            self.bar.setFormat(event.message)

    def _on_done(self, event: Event) -> None:
        self.runner = None
        pending, self.pending_out = self.pending_out, ""
        self.cancel_button.setEnabled(False)
        if not isinstance(event, Finished) and self.current_file == pending:
            self.chosen.emit("")  # nothing was made: do not leave a missing file in the field
        if isinstance(event, Finished):
            path = str(event.result.get("path", ""))
            self.bar.setValue(1000)
            self.bar.setFormat(
                f"done: {event.result.get('chunks')} chunks in "
                f"{_duration(event.result.get('compute_seconds'))}"
            )
            self.stored = [Path(path), *[p for p in self.stored if str(p) != path]]
            self.chosen.emit(path)
        elif isinstance(event, Cancelled):
            self.bar.setFormat("cancelled; no file was left behind")
        elif isinstance(event, Failed):
            self.bar.setFormat("failed")
            self.error.setText(f"{event.message} {event.hint}".strip())
            self.error.show()
        self._refresh()

    def shutdown(self) -> None:
        if self.runner is not None:
            self.runner.cancel()
