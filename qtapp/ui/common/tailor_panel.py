"""Tailor to a budget (issue 13): the scan's cost first, then the scan with progress, ETA and
Cancel, then the saved recipe with its exact size and predicted KLD.

Opened from the Fit page (the budget is the whole plan on the selected GPUs or the what-if,
at the page's context and KV type) and from the Quantize page (a budget for the weights).
Everything slow runs off the GUI thread: reading the model and the cache in a
:class:`BackgroundCall`, the scan in a child process through a :class:`JobRunner`, the solve,
llama.cpp's dry run and the save in another :class:`BackgroundCall` (``tailor_and_save``, the
same core function as ``quantlens tailor``).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.errors import QuantLensError
from qtapp.core.fit.plan import PlanInputs
from qtapp.core.gguf.model import ModelInfo, read_model
from qtapp.core.jobs.events import Cancelled, Event, Failed, Finished, Progress
from qtapp.core.jobs.job import JobHooks
from qtapp.core.tailor.scan import (
    Scan,
    ScanRecord,
    ScanSettings,
    cached_scan,
    check_source,
    scan_cost,
    scan_spec,
)
from qtapp.core.tailor.tailor import Tailored, tailor_and_save
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.progress import progress_row
from qtapp.ui.common.workers import JobRunner

log = logging.getLogger(__name__)
ERROR_STYLE = "color: #c0392b;"
WARN_STYLE = "color: #c77700;"
GOOD_STYLE = "color: #1e7b34;"


def _duration(seconds: object) -> str:
    if not isinstance(seconds, (int, float)):
        return "–"
    s = max(0, int(round(seconds)))
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"


class _ScanHooks(JobHooks):
    """The scan's record in the job's thread: its work folder removed whatever ends it, a
    result cached (no disk work on the GUI thread)."""

    def __init__(self, record: ScanRecord) -> None:
        self.record = record

    def end(self, terminal: Event) -> None:
        self.record.end(terminal)


def _prepare(path: Path, settings: ScanSettings) -> dict[str, Any]:
    """Off the GUI thread: the model, whether it is quantized, the scan's cost, a cached scan."""
    m = read_model(path)
    quantized = ""
    try:
        check_source(m, False)
    except QuantLensError as exc:
        quantized = str(exc)
    settings.validate()
    return {
        "model": m,
        "quantized": quantized,
        "cost": scan_cost(m, settings),
        "cached": cached_scan(m, settings) is not None,
    }


class TailorDialog(QDialog):
    """``saved(name)`` when a recipe was saved; ``show_in_fit``/``quantize``/``edit`` with the
    recipe's name when the user presses the matching button."""

    saved = Signal(str)
    show_in_fit = Signal(str)
    quantize = Signal(str)
    edit = Signal(object)  # the Recipe

    def __init__(
        self,
        model: str | Path,
        *,
        inputs: PlanInputs | None = None,
        budget: int | None = None,
        settings: ScanSettings | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Tailor to this budget")
        self.setObjectName("tailorDialog")
        self.model_path = Path(model)
        # a copy: the Fit page's figures change on the GUI thread while the solve reads these
        self.inputs = (
            dataclasses.replace(
                inputs,
                weights=dict(inputs.weights),
                exact=dict(inputs.exact),
                recipes=dict(inputs.recipes),
            )
            if inputs is not None
            else None
        )
        self.settings = settings or ScanSettings()
        self.model: ModelInfo | None = None
        self.cached = False
        self.runner: JobRunner | None = None
        self.record: ScanRecord | None = None
        self.result: Tailored | None = None
        self.recipe_file: Path | None = None
        self.state = (
            "reading"  # reading, ready, refused, scanning, solving, done, failed, cancelled
        )
        self._calls: list[BackgroundCall] = []
        self._build(budget)
        self._run(lambda _c: _prepare(self.model_path, self.settings), "tailor-prepare",
                  self._on_prepared)  # fmt: skip

    # -- layout ---------------------------------------------------------------------------------
    def _build(self, budget: int | None) -> None:
        self.setMinimumWidth(520)
        lay = QVBoxLayout(self)
        lay.setSpacing(8)
        intro = QLabel(
            "Measures how much each tensor group loses at each quant type, then picks the "
            "least-loss mix that fills the budget, with llama.cpp's exact sizes. The result is "
            "saved as one of your recipes."
        )
        intro.setWordWrap(True)
        lay.addWidget(intro)
        self.target = QLabel()
        self.target.setObjectName("tailorTarget")
        self.target.setWordWrap(True)
        self.target.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.target)
        self.budget_box = QDoubleSpinBox()
        self.budget_box.setDecimals(1)
        self.budget_box.setRange(0.1, 4_000_000.0)
        self.budget_box.setSuffix(" MiB")
        self.budget_box.setValue((budget or 2**30) / 2**20)
        self._budget_given = budget is not None
        self.budget_box.setToolTip("The bytes of all the weights together")
        if self.inputs is None:
            row = QHBoxLayout()
            row.addWidget(QLabel("Weights budget"))
            row.addWidget(self.budget_box)
            row.addStretch(1)
            lay.addLayout(row)
            self.target.hide()
        else:
            self.target.setText(self._target_text(self.inputs))
        self.cost = QLabel(f"Reading {self.model_path.name}…")
        self.cost.setObjectName("tailorCost")
        self.cost.setWordWrap(True)
        lay.addWidget(self.cost)
        self.requantize = QCheckBox("Requantize anyway (the source is already quantized)")
        self.requantize.setToolTip(
            "Every mix would be made from already-rounded weights and measured against them."
        )
        self.requantize.toggled.connect(lambda _on: self._refresh())
        self.requantize.hide()
        lay.addWidget(self.requantize)
        self.progress_row, self.bar, self.cancel_button = progress_row(self.cancel)
        lay.addWidget(self.progress_row)
        self.message = QLabel()
        self.message.setObjectName("tailorMessage")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()
        lay.addWidget(self.message)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Scan and tailor")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.fit_button = QPushButton("Show in Fit")
        self.fit_button.clicked.connect(lambda: self._emit_and_close(self.show_in_fit))
        self.quantize_button = QPushButton("Quantize it")
        self.quantize_button.clicked.connect(lambda: self._emit_and_close(self.quantize))
        self.edit_button = QPushButton("Edit recipe")
        self.edit_button.clicked.connect(self._edit)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons.addWidget(self.start_button)
        buttons.addStretch(1)
        for b in (self.fit_button, self.quantize_button, self.edit_button):
            b.hide()
            buttons.addWidget(b)
        buttons.addWidget(self.close_button)
        lay.addStretch(1)  # spare height below the text, not between its lines
        lay.addLayout(buttons)
        self._refresh()

    @staticmethod
    def _target_text(inp: PlanInputs) -> str:
        gpus = ", ".join(f"{d.name} ({d.total_bytes / 2**30:.1f} GiB)" for d in inp.gpus)
        s = inp.settings
        return (
            f"<b>Budget:</b> the whole plan (weights, KV cache, compute, overhead) on "
            f"{gpus or 'no GPU'}, at a context of {s.n_ctx:,} tokens with a {s.type_k} KV cache."
        )

    def _refresh(self) -> None:
        ready = self.state == "ready" or (self.state == "refused" and self.requantize.isChecked())
        ready = ready or (self.state in ("failed", "cancelled") and self.model is not None)
        if self.inputs is not None and not self.inputs.gpus:
            ready = False
        self.start_button.setEnabled(ready)
        self.budget_box.setEnabled(self.state not in ("scanning", "solving"))
        self.requantize.setEnabled(self.state not in ("scanning", "solving"))
        done = self.state == "done"
        for b in (self.fit_button, self.quantize_button, self.edit_button):
            b.setVisible(done)
        self.start_button.setVisible(not done)
        self._fit_height()

    def _fit_height(self) -> None:
        """A message appeared or went: as tall as the wrapped text at this width (adjustSize
        would size the wrapped labels for a narrower width, leaving gaps)."""
        width = max(self.width(), self.minimumWidth())
        height = self.layout().totalHeightForWidth(width)
        if height > 0:
            self.resize(width, height)
        else:
            self.adjustSize()

    def _run(self, task: Any, name: str, on_done: Any) -> None:
        call = BackgroundCall(task, name, self)
        call.finished.connect(on_done)
        call.failed.connect(self._on_failed)
        self._calls = [c for c in self._calls if c.is_running()] + [call.start()]

    # -- before the start -----------------------------------------------------------------------
    def _on_prepared(self, got: object) -> None:
        assert isinstance(got, dict)
        self.model = got["model"]
        self.cached = bool(got["cached"])
        if not self._budget_given and self.model is not None:  # about 5 bits per weight
            self.budget_box.setValue(round(self.model.weights_bytes * 5 / 16 / 2**20, 1))
        if self.inputs is not None and not self.inputs.gpus:
            self.cost.setText("Choose at least one GPU, or type a what-if size, on the Fit page.")
            self.cost.setStyleSheet(ERROR_STYLE)
            self.state = "refused"
            self._refresh()
            return
        if self.cached:
            self.cost.setText(
                "A scan of this model with these settings is cached: tailoring takes seconds."
            )
        else:
            cost = got["cost"]
            self.cost.setText(
                f"<b>Scan cost:</b> {cost.describe()}, then the solve and one dry run. "
                "Cached afterwards for this model and text."
            )
        if got["quantized"]:
            self.state = "refused"
            self.message.setText(got["quantized"])
            self.message.setStyleSheet(WARN_STYLE)
            self.message.show()
            self.requantize.show()
        else:
            self.state = "ready"
        self._refresh()

    def budget_bytes(self) -> int:
        return int(self.budget_box.value() * 2**20)

    # -- the scan -------------------------------------------------------------------------------
    def start(self) -> None:
        if self.model is None or self.state in ("scanning", "solving"):
            return
        self.message.hide()
        self.progress_row.show()
        self.cancel_button.setEnabled(True)
        self.bar.setValue(0)
        if self.cached:
            self._solve_cached()
            return
        self.state = "scanning"
        self.bar.setFormat("starting the scan…")
        self._refresh()
        m, settings, requantize = self.model, self.settings, self.requantize.isChecked()
        self._run(lambda _c: scan_spec(m, settings, requantize), "tailor-spec", self._start_job)

    def _start_job(self, spec: object) -> None:
        assert self.model is not None
        self.record = ScanRecord(self.model, self.settings, spec)  # type: ignore[arg-type]
        if self.state != "scanning":  # cancelled before the child started: only the folder
            self.record.end(Cancelled(partial={}))
            return
        runner = JobRunner(spec, self, hooks=_ScanHooks(self.record))  # type: ignore[arg-type]
        runner.event.connect(self._on_event)
        runner.done.connect(self._on_scanned)
        self.runner = runner
        runner.start()

    def cancel(self) -> None:
        if self.state == "scanning":
            self.cancel_button.setEnabled(False)
            self.bar.setFormat("cancelling…")
            if self.runner is not None:
                self.runner.cancel()
            else:
                self.state = "cancelled"
                self._show_cancelled()

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, Progress) or self.state != "scanning":
            return
        self.bar.setValue(int(event.fraction * 1000))
        eta = event.detail.get("eta_s")
        tail = f" · ETA {_duration(eta)}" if isinstance(eta, (int, float)) else ""
        self.bar.setFormat(f"%p%  {event.message}{tail}")

    def _on_scanned(self, event: Event) -> None:
        self.runner = None
        if isinstance(event, Finished) and self.record is not None and self.record.scan:
            self._solve(self.record.scan)
        elif isinstance(event, Cancelled):
            self.state = "cancelled"
            self._show_cancelled()
        else:
            message = event.message if isinstance(event, Failed) else "The scan failed."
            hint = event.hint if isinstance(event, Failed) else ""
            self._on_failed(f"{message} {hint}".strip())

    def _show_cancelled(self) -> None:
        self.bar.setFormat("cancelled; no file was left behind")
        self.cancel_button.setEnabled(False)
        self._refresh()

    # -- the solve ------------------------------------------------------------------------------
    def _solve_cached(self) -> None:
        m, settings = self.model, self.settings
        assert m is not None

        def load(_c: BackgroundCall) -> Scan:
            scan = cached_scan(m, settings)
            if scan is None:
                raise QuantLensError("The cached scan is gone.", "Press Scan and tailor again.")
            return scan

        self.state = "solving"
        self.bar.setFormat("reading the cached scan…")
        self._refresh()
        self._run(load, "tailor-cached", self._solve)

    def _solve(self, scan: object) -> None:
        assert isinstance(scan, Scan) and self.model is not None
        self.state = "solving"
        self.cancel_button.setEnabled(False)
        self.bar.setValue(1000)
        self.bar.setFormat("choosing the mix, sizing it with llama.cpp…")
        self._refresh()
        m, inp = self.model, self.inputs
        budget = None if inp is not None else self.budget_bytes()
        self._run(
            lambda _c: tailor_and_save(m, scan, budget=budget, inp=inp),
            "tailor-solve",
            self._on_saved,
        )

    def _on_saved(self, got: object) -> None:
        t, path = got  # type: ignore[misc]
        self.result, self.recipe_file = t, path
        self.state = "done"
        self.cached = True
        self.bar.setFormat("done")
        self.progress_row.hide()
        fits = ""
        if t.row is not None:
            used = ", ".join(
                f"{u.device} {_mib(u.total_bytes)} of {_mib(u.budget_bytes)}"
                for u in t.row.devices
                if u.device != "CPU"
            )
            fits = f"<br>Whole plan: {used}."
        self.message.setText(
            f"<b>Saved recipe {t.recipe.name}</b>: {_mib(t.bytes)} of weights "
            f"({t.bytes:,} bytes, exact), predicted mean KLD {t.solution.predicted_kld:.4f}."
            f"{fits}"
        )
        self.message.setStyleSheet(GOOD_STYLE)
        self.message.show()
        self._refresh()
        self.saved.emit(t.recipe.name)

    def _on_failed(self, message: str) -> None:
        self.state = "failed" if self.model is not None else "refused"
        self.progress_row.hide()
        self.message.setText(message)
        self.message.setStyleSheet(ERROR_STYLE)
        self.message.show()
        if self.model is None:
            self.cost.setText(f"Cannot tailor {self.model_path.name}.")
        self._refresh()

    # -- after ----------------------------------------------------------------------------------
    def _emit_and_close(self, signal: Any) -> None:
        if self.result is not None:
            signal.emit(self.result.recipe.name)
            self.accept()

    def _edit(self) -> None:
        if self.result is not None:
            self.edit.emit(self.result.recipe)
            self.accept()

    def is_busy(self) -> bool:
        return self.state in ("scanning", "solving") or any(c.is_running() for c in self._calls)

    def shutdown(self) -> None:
        """Cancel a running scan and wait for it (its work folder is removed by its hook)."""
        if self.runner is not None:
            self.runner.cancel()
            self.runner.wait()
        for c in self._calls:
            c.wait()

    def done(self, result: int) -> None:  # noqa: D401 - Qt override
        if self.runner is not None:
            self.runner.cancel()  # the child dies now; its hook removes the work folder
        super().done(result)
