"""The Fit page's controls: context, KV type, batch sizes, margin, GPUs and a what-if box."""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.errors import QuantLensError
from qtapp.core.fit.devices import MIB, Device, devices_from_report, parse_gpu_spec
from qtapp.core.fit.kv_model import ContextSettings
from qtapp.core.fit.sources import what_if_host

KV_CHOICES = ["f16", "q8_0", "q4_0"]
MIN_CTX, MAX_CTX = 256, 1 << 20


#: llama.cpp's --load-mode values, in words (qtapp.core.fit.host_memory.LOAD_MODES)
LOAD_MODE_WORDS = {
    "mmap": "mapped from the file (default)",
    "none": "read into RAM (--load-mode none)",
    "mmap+mlock": "mapped and locked (mlock)",
    "mlock": "read in and locked (mlock)",
}


class FitControls(QFrame):
    """Emits ``changed`` whenever a setting moves (slider drags included)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("fitControls")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.report: Any = None
        self._gpu_boxes: list[QCheckBox] = []
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 10, 12, 10)
        title = QLabel("<b>Run settings</b>")
        outer.addWidget(title)
        form = QFormLayout()
        form.setVerticalSpacing(6)
        # context: a log-scale slider plus an exact box
        self.ctx_slider = QSlider(Qt.Orientation.Horizontal)
        self.ctx_slider.setRange(0, 1000)
        self.ctx_box = QSpinBox()
        self.ctx_box.setRange(MIN_CTX, MAX_CTX)
        self.ctx_box.setSingleStep(1024)
        self.ctx_box.setSuffix(" tokens")
        self.ctx_box.setGroupSeparatorShown(True)
        self.ctx_box.setValue(4096)
        ctx_row = QHBoxLayout()
        ctx_row.addWidget(self.ctx_slider, 1)
        ctx_row.addWidget(self.ctx_box)
        form.addRow("Context", ctx_row)
        self.kv = QComboBox()
        self.kv.addItems(KV_CHOICES)
        self.fa_note = QLabel("")
        self.fa_note.setStyleSheet("color: palette(placeholder-text);")
        self.fa_note.setWordWrap(True)
        kv_row = QHBoxLayout()
        kv_row.addWidget(self.kv)
        kv_row.addWidget(self.fa_note, 1)
        form.addRow("KV cache", kv_row)
        self.batch = QSpinBox()
        self.batch.setRange(32, 65536)
        self.batch.setValue(2048)
        self.ubatch = QSpinBox()
        self.ubatch.setRange(32, 65536)
        self.ubatch.setValue(512)
        self.batch.setSuffix(" tokens")
        self.ubatch.setSuffix(" tokens")
        self.batch.setToolTip("n_batch: tokens per decode call (llama.cpp's -b)")
        self.ubatch.setToolTip("n_ubatch: tokens per compute pass (llama.cpp's -ub)")
        form.addRow("Batch", self.batch)
        form.addRow("Micro-batch", self.ubatch)
        self.margin = QSpinBox()
        self.margin.setRange(0, 65536)
        self.margin.setSingleStep(256)
        self.margin.setValue(1024)
        self.margin.setSuffix(" MiB per GPU")
        form.addRow("Safety margin", self.margin)
        self.gpu_row = QHBoxLayout()
        self.gpu_none = QLabel("no GPU found")
        self.gpu_none.setStyleSheet("color: palette(placeholder-text);")
        self.gpu_row.addWidget(self.gpu_none)
        self.gpu_row.addStretch(1)
        form.addRow("GPUs", self.gpu_row)
        self.what_if = QLineEdit()
        self.what_if.setPlaceholderText("e.g. 2x48GiB or 24GiB,12GiB")
        self.what_if.setClearButtonEnabled(True)
        self.what_if_error = QLabel("")
        self.what_if_error.setStyleSheet("color: #d64545;")
        self.what_if_error.setVisible(False)
        form.addRow("What if", self.what_if)
        form.addRow("", self.what_if_error)
        self.ram = QLineEdit()
        self.ram.setPlaceholderText("as detected, or e.g. 256GiB")
        self.ram.setClearButtonEnabled(True)
        self.ram.textChanged.connect(self._on_ram)
        form.addRow("Host RAM", self.ram)
        self.load_mode = QComboBox()
        for mode, words in LOAD_MODE_WORDS.items():
            self.load_mode.addItem(words, mode)
        self.load_mode.setToolTip(
            "How llama.cpp loads the weights (its --load-mode). Mapped: the file's pages are "
            "shared with the page cache and can be dropped under pressure. Read in: a private "
            "copy (--load-mode none). Locked (mlock): kept in RAM, never swapped or dropped."
        )
        self.load_mode.currentIndexChanged.connect(lambda _i: self.changed.emit())
        form.addRow("Load weights", self.load_mode)
        outer.addLayout(form)
        self.defaults = QLabel(
            "llama.cpp defaults as llama-server uses them: swa_full off, "
            "flash attention auto, one sequence."
        )
        self.defaults.setWordWrap(True)
        self.defaults.setStyleSheet("color: palette(placeholder-text);")
        outer.addWidget(self.defaults)
        self._sync_slider(4096)
        self.ctx_slider.valueChanged.connect(self._on_slider)
        self.ctx_box.valueChanged.connect(self._on_box)
        for w in (self.batch, self.ubatch, self.margin):
            w.valueChanged.connect(self.changed)
        self.kv.currentTextChanged.connect(self._on_kv)
        self.what_if.textChanged.connect(self._on_what_if)
        self._on_kv(self.kv.currentText())

    # -- context -----------------------------------------------------------------------------
    @staticmethod
    def _slider_to_ctx(v: int) -> int:
        lo, hi = math.log2(MIN_CTX), math.log2(MAX_CTX)
        ctx = 2 ** (lo + (hi - lo) * v / 1000)
        return int(round(ctx / 256) * 256) or 256

    def _sync_slider(self, ctx: int) -> None:
        lo, hi = math.log2(MIN_CTX), math.log2(MAX_CTX)
        self.ctx_slider.blockSignals(True)
        self.ctx_slider.setValue(int(round((math.log2(max(ctx, MIN_CTX)) - lo) / (hi - lo) * 1000)))
        self.ctx_slider.blockSignals(False)

    def _on_slider(self, v: int) -> None:
        self.ctx_box.blockSignals(True)
        self.ctx_box.setValue(self._slider_to_ctx(v))
        self.ctx_box.blockSignals(False)
        self.changed.emit()

    def _on_box(self, ctx: int) -> None:
        self._sync_slider(ctx)
        self.changed.emit()

    def set_context(self, ctx: int) -> None:
        self.ctx_box.setValue(max(MIN_CTX, min(ctx, MAX_CTX)))

    def set_max_context(self, n_ctx_train: int) -> None:
        if n_ctx_train > 0:
            self.ctx_box.setToolTip(f"The model was trained for {n_ctx_train:,} tokens.")

    # -- KV and what-if ------------------------------------------------------------------------
    def _on_kv(self, text: str) -> None:
        if text in ("f16", "bf16", "f32"):
            self.fa_note.setText("flash attention: auto")
        else:
            self.fa_note.setText("a quantized V cache needs flash attention: turned on")
        self.changed.emit()

    def _on_what_if(self, text: str) -> None:
        _devices, error = _parse_sizes(text)
        if error is not None:
            self.what_if_error.setText(error.message + " " + error.hint)
        self.what_if_error.setVisible(error is not None)
        for box in self._gpu_boxes:
            box.setEnabled(not text.strip())
        if error is None:
            self.changed.emit()

    def set_hardware(self, report: Any) -> None:
        """Checkboxes for the real GPUs of a HardwareReport (all on)."""
        self.report = report
        for box in self._gpu_boxes:
            self.gpu_row.removeWidget(box)
            box.deleteLater()
        self._gpu_boxes = []
        gpus = list(getattr(report, "gpus", ()) or ())
        self.gpu_none.setVisible(not gpus)
        for i, gpu in enumerate(gpus):
            free = (getattr(gpu, "free_bytes", None) or 0) / 1024**3
            box = QCheckBox(f"GPU {getattr(gpu, 'index', i)} ({free:.0f} GiB free)")
            box.setChecked(True)
            box.setToolTip(getattr(gpu, "name", None) or "")
            box.toggled.connect(self.changed)
            self.gpu_row.insertWidget(self.gpu_row.count() - 1, box)
            self._gpu_boxes.append(box)
        self.changed.emit()

    def _on_ram(self, text: str) -> None:
        error = _ram_error(text)
        self.ram.setStyleSheet("" if error is None else "color: #d64545;")
        self.ram.setToolTip("" if error is None else f"{error.message} {error.hint}")
        if error is None:
            self.changed.emit()

    def host(self, detected: Device) -> Device:
        """The detected host, or a what-if RAM size (as ``quantlens plan --ram``)."""
        if _ram_error(self.ram.text()) is not None:
            return detected
        return what_if_host(detected, self.ram.text())

    # -- reading ------------------------------------------------------------------------------
    def settings(self) -> ContextSettings:
        kv = self.kv.currentText()
        return ContextSettings(
            n_ctx=self.ctx_box.value(),
            type_k=kv,
            type_v=kv,
            n_batch=self.batch.value(),
            n_ubatch=min(self.ubatch.value(), self.batch.value()),
        )

    def load_mode_value(self) -> str:
        """llama.cpp's --load-mode for the plan (``mmap`` unless the user chose otherwise)."""
        return str(self.load_mode.currentData() or "mmap")

    def margin_bytes(self) -> int:
        return self.margin.value() * MIB

    def gpus(self) -> list[Device]:
        what_if, _error = _parse_sizes(self.what_if.text())
        if what_if:
            return what_if
        if self.report is None:
            return []
        use = [
            int(getattr(g, "index", i))
            for i, (g, box) in enumerate(
                zip(getattr(self.report, "gpus", ()) or (), self._gpu_boxes, strict=False)
            )
            if box.isChecked()
        ]
        return devices_from_report(self.report, use)

    def is_what_if(self) -> bool:
        return bool(self.what_if.text().strip()) and not self.what_if_error.isVisible()


def _parse_sizes(text: str) -> tuple[list[Device], QuantLensError | None]:
    """A what-if box's devices (``[]`` when empty or invalid) and why it is invalid, if it is."""
    if not text.strip():
        return [], None
    try:
        return parse_gpu_spec(text), None
    except QuantLensError as exc:
        return [], exc


def _ram_error(text: str) -> QuantLensError | None:
    try:
        what_if_host(Device("CPU", 0, 0, 0.0, False, ""), text)
    except QuantLensError as exc:
        return exc
    return None
