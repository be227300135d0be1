"""The Fit page: which quantization of the open model fits the GPUs, at what context and speed.

Every control change replans at once from the instant analytic figures (a plan of ~40 rows takes
milliseconds); llama.cpp's exact figures (dry-run quantization of every target, a no-alloc load
for the KV / compute sizes) run in worker children and swap in when they finish, marked "exact".
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.fit.devices import host_device
from qtapp.core.fit.host_memory import HostLoad, HostRepack, host_memory_text
from qtapp.core.fit.measured_speed import MeasuredSpeeds, speed_caption
from qtapp.core.fit.plan import Plan, PlanInputs, PlanRow, make_plan, targets_for
from qtapp.core.fit.plan_checks import plan_checks_text
from qtapp.core.fit.quality_order import METRIC_NAMES, QualityOrder
from qtapp.core.fit.quants import Recipe
from qtapp.core.fit.sources import PlanSources, read_plan_sources
from qtapp.core.gguf.model import ModelInfo
from qtapp.core.tailor.scan import ScanSettings
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.banner import Banner
from qtapp.ui.common.context import AppContext
from qtapp.ui.common.elided_label import ElidedLabel
from qtapp.ui.common.tailor_panel import TailorDialog
from qtapp.ui.fit.controls import FitControls
from qtapp.ui.fit.device_bars import DeviceBars
from qtapp.ui.fit.exact_jobs import ExactFigureJobs
from qtapp.ui.fit.model_card import ModelCard, human_bytes
from qtapp.ui.fit.table import MEASURED_MARK, FitTable

log = logging.getLogger(__name__)
EXACT_DELAY_MS = 350  # settle time before asking llama.cpp for a settings change
TAILOR_TIP = (
    "Measure which tensors matter, then save the best per-tensor mix whose whole plan fits the "
    "selected GPUs (or the what-if) at this context and KV type."
)
CAPTION = "Memory in GiB per device: weights + KV cache + compute + CUDA overhead. ★ recommended."


class Page(QWidget):
    key = "fit"
    title = "Fit"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.model: ModelInfo | None = None
        self.plan: Plan | None = None
        self.host = host_device(ctx.hardware)
        self.recipes: dict[str, Recipe] = {}  # the user's saved recipes, read at model open
        self.quality = QualityOrder()  # measured order from the results store, read at open
        self.speeds = MeasuredSpeeds()  # measured tokens/s from the results store, read at open
        self.repack = HostRepack()  # what the llama.cpp build repacks, read with the model
        self.checks_text = ""  # how far the plans of the user's evaluations were off
        self.tailor_settings = ScanSettings()  # the Tailor dialog's scan (tests make it small)
        self.tailor_dialog: TailorDialog | None = None
        self._select_after = ""  # a recipe to select once the model is read again
        self._loader: BackgroundCall | None = None
        self.last_plan_ms = 0.0
        self._build()
        self._replan_timer = QTimer(self, singleShot=True, interval=0)
        self._replan_timer.timeout.connect(self.replan)
        self.figures = ExactFigureJobs(self.controls.settings, self)
        self.figures.updated.connect(self._on_figures)
        self.figures.status.connect(self.exact_label.setText)
        self._exact_timer = QTimer(self, singleShot=True, interval=EXACT_DELAY_MS)
        self._exact_timer.timeout.connect(self.figures.request_memory)
        self.controls.changed.connect(self._on_settings)
        ctx.model_changed.connect(self.open_model)
        ctx.hardware_changed.connect(self._on_hardware)
        if ctx.hardware is not None:
            self._on_hardware(ctx.hardware)
        if ctx.model_path is not None:
            self.open_model(ctx.model_path)

    # -- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(16, 12, 16, 12)
        root.setSpacing(10)
        top = QHBoxLayout()
        heading = QLabel("Fit")
        f = heading.font()
        f.setPointSizeF(f.pointSizeF() * 1.5)
        f.setBold(True)
        heading.setFont(f)
        top.addWidget(heading)
        self.path_label = ElidedLabel("Open a GGUF model to see which quantization fits.")
        self.path_label.setStyleSheet("color: palette(placeholder-text);")
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(self.path_label, 1)
        self.open_button = QPushButton("Open model…")
        self.open_button.clicked.connect(self._choose_file)
        top.addWidget(self.open_button)
        root.addLayout(top)
        self.banner = Banner()
        root.addWidget(self.banner)
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_l = QVBoxLayout(left)
        left_l.setContentsMargins(0, 0, 6, 0)
        self.card = ModelCard()
        self.controls = FitControls()
        left_l.addWidget(self.card)
        left_l.addWidget(self.controls)
        left_l.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # as wide as the controls need next to a vertical scroll bar: no sideways scrolling
        room = left.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(max(360, room + 4))
        split.addWidget(scroll)
        right = QWidget()
        right_l = QVBoxLayout(right)
        right_l.setContentsMargins(6, 0, 0, 0)
        caption = self.caption = QLabel(CAPTION)
        caption.setWordWrap(True)
        caption.setStyleSheet("color: palette(placeholder-text);")
        right_l.addWidget(caption)
        self.table = FitTable()
        self.table.row_selected.connect(self._on_row)
        right_l.addWidget(self.table, 1)
        self.bars = DeviceBars()
        right_l.addWidget(self.bars)
        # what the host's RAM holds for the selected row: copies, mapped pages, pages read once
        self.host_label = QLabel("")
        self.host_label.setWordWrap(True)
        self.host_label.setObjectName("hostMemory")
        self.host_label.setStyleSheet("color: palette(placeholder-text);")
        right_l.addWidget(self.host_label)
        bottom = QHBoxLayout()
        self.exact_label = QLabel("")
        self.exact_label.setWordWrap(True)
        self.exact_label.setStyleSheet("color: palette(placeholder-text);")
        bottom.addWidget(self.exact_label, 1)
        self.tailor_button = QPushButton("Tailor to this budget…")
        self.tailor_button.setEnabled(False)
        self.tailor_button.setToolTip(TAILOR_TIP)
        self.tailor_button.clicked.connect(self.open_tailor)
        bottom.addWidget(self.tailor_button)
        self.quantize_button = QPushButton("Quantize selected…")
        self.quantize_button.setEnabled(False)
        self.quantize_button.setToolTip("Queue the selected types on the Quantize page.")
        self.quantize_button.clicked.connect(self.quantize_selected)
        bottom.addWidget(self.quantize_button)
        right_l.addLayout(bottom)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([scroll.minimumWidth(), 900])
        root.addWidget(split, 1)

    # -- model ----------------------------------------------------------------------------------
    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a GGUF model", "", "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.ctx.open_model(path)

    def open_model(self, path: object) -> None:
        path = Path(str(path))
        self.path_label.setText(f"Reading {path.name}…")
        self.figures.cancel()
        call = BackgroundCall(lambda _c: _read_for_plan(path), "fit-read", self)
        call.finished.connect(self._on_model_read)
        call.failed.connect(self._on_model_failed)
        self._loader = call.start()

    def _is_stale(self) -> bool:
        """A read of a file opened before the latest one: its result must not overwrite it."""
        sender = self.sender()
        return isinstance(sender, BackgroundCall) and sender is not self._loader

    def _on_model_failed(self, message: str) -> None:
        if self._is_stale():
            return
        self.model = None
        self.plan = None
        self.path_label.setText("No model open.")
        self.path_label.setToolTip("")
        self.banner.set_message("error", "This file cannot be planned", message)
        self.card.clear()  # the previous model's figures would read as this file's
        self.table.clear()
        self.exact_label.setText("")
        self.quantize_button.setEnabled(False)

    def _on_model_read(self, got: object) -> None:
        if self._is_stale():
            return
        assert isinstance(got, PlanSources)
        m, self.recipes, self.quality, self.speeds = got.model, got.recipes, got.quality, got.speeds
        self.repack = got.repack
        self.checks_text = plan_checks_text(got.checks)
        same = self.model is not None and self.model.path == m.path  # a re-read: keep settings
        self.model = m
        self.path_label.setText(str(m.path))
        self.path_label.setToolTip(str(m.path))
        self.card.set_model(m)
        if not same:
            self.controls.set_max_context(m.n_ctx_train)
            self.controls.blockSignals(True)
            self.controls.set_context(min(m.n_ctx_train or 4096, 8192))
            self.controls.blockSignals(False)
        self.figures.open(m, self.recipes, got.weights)
        if self._select_after:
            self.replan()
            self.select_recipe(self._select_after)
        else:  # the plan in a turn of its own: with the model's card it was a 20-25 ms turn
            self._replan_timer.start()
        self._request_weights()
        self.figures.request_memory()

    def _on_hardware(self, report: Any) -> None:
        self.host = host_device(report)
        self.controls.set_hardware(report)

    # -- planning -------------------------------------------------------------------------------
    def _on_settings(self) -> None:
        self._replan_timer.start()
        self._exact_timer.start()

    def inputs(self) -> PlanInputs | None:
        if self.model is None:
            return None
        return PlanInputs(
            self.model,
            self.controls.settings(),
            self.controls.gpus(),
            self.controls.host(self.host),
            margin=self.controls.margin_bytes(),
            weights=self.figures.weights,
            exact=self.figures.exact,
            quality=self.quality,
            recipes=self.recipes,
            speeds=self.speeds,
            load=HostLoad(self.controls.load_mode_value(), self.repack),
        )

    def _targets(self) -> list[str]:
        assert self.model is not None
        return targets_for(self.model, self.recipes, self.quality)

    def _on_figures(self) -> None:
        """New exact figures: a plan is made from them in a thread first, then again here.

        The first plan with new weights sums each type's tensors (memoized per weights): on the
        GUI thread that was 25-50 ms of one turn when the dry run's figures came in. The plan
        made here afterwards finds the sums made. (Not for a new model's first plan, 11 ms here
        on a quiet core: a thread's plan then ran beside the tour's first turns, and these
        turns' stalls had 37-42 ms of blocked GUI thread, most likely waiting for the GIL.)"""
        inp = self.inputs()
        if inp is None:
            return
        inp = replace(inp, weights=dict(inp.weights), exact=dict(inp.exact))  # this turn's

        def warm(_call: BackgroundCall) -> None:
            make_plan(inp)  # the plan itself is made again on the GUI thread

        call = BackgroundCall(warm, "fit-figures", self)
        for done in (call.finished, call.failed):
            done.connect(lambda *_: self._replan_timer.start())
        call.start()
        call.delete_when_done()

    def replan(self) -> None:
        import time

        inp = self.inputs()
        if inp is None:
            return
        t0 = time.perf_counter()
        self.plan = make_plan(inp)
        self.table.set_plan(self.plan)
        self._update_caption(self.plan)
        self.last_plan_ms = (time.perf_counter() - t0) * 1000
        self._show_recommendation(self.plan)
        self._update_exact_label()
        self.quantize_button.setEnabled(True)
        self.tailor_button.setEnabled(bool(inp.gpus))
        self.tailor_button.setToolTip(
            TAILOR_TIP if inp.gpus else "Tick a GPU or type a what-if size to tailor to it."
        )

    def _update_caption(self, plan: Plan) -> None:
        text = CAPTION
        if plan.quality.source == "measured":
            metric = METRIC_NAMES.get(plan.quality.metric, plan.quality.metric)
            text += f" {MEASURED_MARK} ranked by your measured {metric}."
        if any(r.user_recipe for r in plan.rows):
            text += " Italics: your recipes."
        text += " " + speed_caption(plan)
        if self.caption.text() != text:
            self.caption.setText(text)

    def _show_recommendation(self, plan: Plan) -> None:
        gpus = [d for d in plan.devices if d.is_gpu]
        where = ("what-if " if self.controls.is_what_if() else "") + (
            f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}" if gpus else "the CPU only"
        )
        if plan.recommended is None:
            self.banner.set_message("error", f"Nothing fits on {where}", plan.why)
            return
        row = plan.row(plan.recommended)
        level = "info" if row is not None and row.verdict == "fits" else "warning"
        ctx_text = f" · up to {plan.recommended_ctx:,} tokens" if plan.recommended_ctx else ""
        self.banner.set_message(
            level, f"Recommended for {where}: {plan.recommended}{ctx_text}", plan.why
        )

    def _on_row(self, row: PlanRow | None) -> None:
        if row is None:
            self.bars.set_devices([], "")
            self.host_label.setText("")
            return
        cpu = next((u for u in row.devices if u.device == "CPU"), None)
        if cpu is not None and self.plan is not None:
            name = "the current file" if row.type == "current" else row.type
            text = host_memory_text(self.plan.load, name, cpu)
            self.host_label.setText(f"{text}\n{self.checks_text}".strip())
        name = "the current file" if row.type == "current" else row.type
        self.bars.set_devices(
            row.devices,
            f"Memory per device for {name} ({human_bytes(row.weights_bytes)} of weights)",
        )

    # -- exact figures ---------------------------------------------------------------------------
    def _request_weights(self) -> None:
        if self.model is not None and self.figures.request_weights(self._targets()):
            self._update_exact_label()

    def _update_exact_label(self) -> None:
        if self.model is None or self.plan is None:
            return
        n_exact = sum(1 for r in self.plan.rows if r.weights_exact)
        mem = "exact" if self.controls.settings() in self.figures.exact else "estimated"
        busy = " · llama.cpp is sizing the rest…" if self.figures.sizing_weights else ""
        self.exact_label.setText(
            f"Weights exact for {n_exact} of {len(self.plan.rows)} rows; KV and compute {mem}"
            f"{busy}."
        )

    def is_busy(self) -> bool:
        return self.figures.is_busy()

    # -- actions ----------------------------------------------------------------------------------
    def quantize_selected(self) -> None:
        if self.model is None:
            return
        types = [t for t in self.table.selected_types() if t != "current"]
        if not types and self.plan is not None and self.plan.recommended:
            types = [self.plan.recommended]
        self.ctx.navigate.emit("quantize")
        window = self.window()
        page = getattr(window, "pages", {}).get("quantize") if window is not None else None
        if page is not None and hasattr(page, "queue_from_fit") and types:
            page.queue_from_fit(self.model.path, types)
        self.ctx.status.emit(f"Queued {', '.join(types)} for quantization." if types else "")

    # -- tailor ----------------------------------------------------------------------------------
    def open_tailor(self) -> TailorDialog | None:
        """The Tailor dialog for the open model; its budget: the whole plan on the selected
        GPUs (or the what-if) at this page's context, KV type and margin."""
        inp = self.inputs()
        if inp is None or self.model is None:
            return None
        if self.tailor_dialog is not None and self.tailor_dialog.is_busy():
            self.tailor_dialog.raise_()
            return self.tailor_dialog
        dialog = TailorDialog(
            self.model.path, inputs=inp, settings=self.tailor_settings, parent=self
        )
        dialog.saved.connect(self.reload_recipes)
        dialog.show_in_fit.connect(self.select_recipe)
        dialog.quantize.connect(lambda _name: self._quantize_recipe(dialog))
        dialog.edit.connect(self._edit_recipe)
        self.tailor_dialog = dialog
        dialog.show()
        return dialog

    def reload_recipes(self, select: str = "") -> None:
        """Read the model's plan sources again (off the GUI thread: the user's recipes, their
        exact sizes), keep the settings, replan, then select ``select``."""
        if self.model is None:
            return
        self._select_after = select
        self.open_model(self.model.path)

    def select_recipe(self, name: str) -> None:
        if self.plan is not None and self.plan.row(name) is not None:
            self._select_after = ""
            self.table.follow_recommendation = False  # as a click: later replans keep it
            self.table.select_type(name)
            self._on_row(self.plan.row(name))
            self.ctx.navigate.emit(self.key)
        else:
            self._select_after = name  # not read yet: selected when it is

    def _quantize_recipe(self, dialog: TailorDialog) -> None:
        """Queue the tailored recipe on the Quantize page (handed over: no disk read)."""
        if self.model is None or dialog.result is None:
            return
        recipe = dialog.result.recipe
        window = self.window()
        page = getattr(window, "pages", {}).get("quantize") if window is not None else None
        if page is not None and hasattr(page, "queue_from_fit"):
            if hasattr(page, "add_user_recipe"):
                page.add_user_recipe(recipe)
            page.queue_from_fit(self.model.path, [recipe.name])

    def _edit_recipe(self, recipe: Recipe) -> None:
        from qtapp.ui.quantize.recipe_editor import RecipeEditorDialog

        dialog = RecipeEditorDialog(self.ctx, str(self.model.path) if self.model else None, self)
        dialog.editor.load_recipe(recipe)
        dialog.saved.connect(lambda name: self.reload_recipes(name))
        dialog.show()

    def shutdown(self) -> None:
        if self.tailor_dialog is not None:
            self.tailor_dialog.shutdown()
        self._replan_timer.stop()
        self._exact_timer.stop()
        self.figures.cancel()
        if self._loader is not None:
            self._loader.wait()


#: the reader the page runs in its background call (a name tests can hold back)
_read_for_plan = read_plan_sources
