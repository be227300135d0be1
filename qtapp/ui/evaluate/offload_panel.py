"""The Evaluate page's offload sweep: tokens/s against GPU layers (dense models, llama-bench
``-ngl``) or against expert layers kept on the CPU (MoE, ``-ncmoe``), measured next to the
planner's prediction, stored with the run so the Fit page's partial-offload rows use it.

Without an NVIDIA GPU the control is disabled and says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.runs import EvalRecorder
from qtapp.core.evaluate.speed_sweep import parse_offload_values, predict_offload
from qtapp.core.jobs.events import Event, Failed, Point
from qtapp.core.jobs.job import JobSpec
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.context import AppContext
from qtapp.ui.common.live_plot import PALETTE, LivePlot

NO_GPU = (
    "No NVIDIA GPU was found (NVML), so there are no layers to move off a GPU. "
    "The depth curves above measure this machine's CPU."
)
AXES = [("ngl", "GPU layers (-ngl)"), ("n_cpu_moe", "expert layers on the CPU (-ncmoe, MoE)")]


class OffloadPanel(QGroupBox):
    """Axis, values, depth and a button; a live chart of tg against the axis."""

    finished = Signal()

    def __init__(self, ctx: AppContext, models: Any, parent: QWidget | None = None) -> None:
        super().__init__("Offload sweep", parent)
        self.ctx = ctx
        self._models = models  # () -> list[Path]: the page's models (the first one is swept)
        self.job_kind = "offload_sweep"  # tests swap in a fake speed source
        self.axis = QComboBox()
        for key, title in AXES:
            self.axis.addItem(title, key)
        self.values = QLineEdit("0,8,16,24,32")
        self.values.setToolTip("Layer counts to measure, e.g. 0,8,16,24,32 (one point each).")
        self.depth = QSpinBox()
        self.depth.setRange(0, 1 << 20)
        self.depth.setSingleStep(1024)
        self.depth.setSuffix(" tokens")
        self.depth.setToolTip("Tokens already in the context for every point (llama-bench -d).")
        self.button = QPushButton("Measure offload curve")
        self.button.clicked.connect(self.start)
        self.reason = QLabel("")
        self.reason.setWordWrap(True)
        self.reason.setStyleSheet("color:#8a5a00")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plot = LivePlot(
            "Generation (tg128) vs offload — dashed: predicted",
            "layers",
            "tokens/s",
            band=True,
            symbols=True,
            integer_x=True,
        )
        self.plot.setMinimumHeight(190)
        form = QFormLayout()
        form.addRow("Sweep", self.axis)
        form.addRow("Values", self.values)
        form.addRow("At depth", self.depth)
        layout = QVBoxLayout(self)
        layout.addWidget(self.reason)
        layout.addLayout(form)
        layout.addWidget(self.button)
        layout.addWidget(self.status)
        layout.addWidget(self.plot)
        self.runner: Any = None
        self._predict: BackgroundCall | None = None
        self._count = 0
        ctx.hardware_changed.connect(self.set_hardware)
        self.set_hardware(ctx.hardware)

    def set_hardware(self, report: object) -> None:
        gpus = list(getattr(report, "gpus", ()) or ())
        running = self.runner is not None and self.runner.terminal is None
        for w in (self.axis, self.values, self.depth, self.button):
            w.setEnabled(bool(gpus) and not running)
        self.reason.setText("" if gpus else NO_GPU)
        self.reason.setVisible(not gpus)
        self.button.setToolTip(NO_GPU if not gpus else "")

    def start(self) -> None:
        models = self._models()
        if not models:
            self.status.setText("Add a model (.gguf) to measure.")
            return
        try:
            values = parse_offload_values(self.values.text())
        except QuantLensError as exc:
            self.status.setText(f"{exc.message} {exc.hint}")
            return
        model = Path(models[0])
        axis = str(self.axis.currentData())
        params: dict[str, Any] = {
            "model": str(model),
            "axis": axis,
            "values": values,
            "depth": int(self.depth.value()),
            "reps": 3,
        }
        self._count += 1
        key = f"{model.name}#offload{self._count}"
        color = PALETTE[(self._count - 1) % len(PALETTE)]
        self.plot.add_run(key, model.stem, color)
        self.plot.plot.getPlotItem().setLabel("bottom", dict(AXES)[axis])
        self._predict_curve(key, model, values, params["depth"], axis, color)
        recorder = EvalRecorder(model, params, background=True)
        recorder.begin()

        def on_event(ev: Event) -> None:
            recorder.add(ev)
            if isinstance(ev, Point) and ev.series == "tg_offload":
                self.plot.append(key, ev.x, ev.y, ev.err)
                self.status.setText(f"{model.name}: {int(ev.x)} layers, {ev.y:.1f} tokens/s")

        def on_done(ev: Event) -> None:
            recorder.add(ev)
            recorder.result.setdefault("offload_axis", axis)
            recorder.result.setdefault("offload_depth", params["depth"])
            recorder.finish(on_stored=self.ctx.results_changed.emit)
            self.status.setText(
                f"Offload sweep failed: {ev.message} {ev.hint}".strip()
                if isinstance(ev, Failed)
                else f"{model.name}: offload curve {recorder.state}."
            )
            self.set_hardware(self.ctx.hardware)
            self.plot.settle()
            self.finished.emit()

        self.recorder = recorder
        self.runner = self.ctx.jobs.submit(JobSpec(self.job_kind, params))
        self.runner.event.connect(on_event)
        self.runner.done.connect(on_done)
        self.set_hardware(self.ctx.hardware)
        self.status.setText(f"Measuring {model.name} at {len(values)} {dict(AXES)[axis]}…")

    def _predict_curve(
        self, key: str, model: Path, values: list[int], depth: int, axis: str, color: str
    ) -> None:
        report = self.ctx.hardware

        def task(_c: BackgroundCall) -> dict[int, tuple[float, float]]:
            return predict_offload(model, values, report, depth, axis)

        def draw(pred: object) -> None:
            if not isinstance(pred, dict) or not pred:
                return
            self.plot.add_run(f"{key}#predicted", f"{model.stem} predicted", color, dashed=True)
            for v, (tg, _pp) in sorted(pred.items()):
                if tg > 0:
                    self.plot.append(f"{key}#predicted", v, tg)

        self._predict = BackgroundCall(task, "offload-prediction", self)
        self._predict.finished.connect(draw)
        self._predict.start()

    def cancel(self) -> None:
        if self.runner is not None and self.runner.terminal is None:
            self.runner.cancel()
