"""The options panel of the Quantize page: tensor types, flags, imatrix, threads, output folder."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.quantize.jobs import QuantizeOptions

#: tensor types offered for output.weight / token_embd.weight
TENSOR_TYPES = [
    "F32",
    "F16",
    "BF16",
    "Q8_0",
    "Q6_K",
    "Q5_K",
    "Q5_0",
    "Q4_K",
    "Q4_0",
    "Q3_K",
    "Q2_K",
    "IQ4_NL",
    "IQ4_XS",
]
AUTO = "automatic"


def _dialogs_allowed() -> bool:
    return not os.environ.get("QUANTLENS_NO_DIALOGS")


class PathField(QWidget):
    """A line edit with a Browse button (file or folder) and an optional Clear button."""

    changed = Signal(str)

    def __init__(
        self,
        placeholder: str,
        folder: bool,
        caption: str,
        file_filter: str = "",
        clearable: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.folder = folder
        self.caption = caption
        self.file_filter = file_filter
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.editingFinished.connect(lambda: self.changed.emit(self.text()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        lay.addWidget(self.edit, 1)
        lay.addWidget(browse)
        if clearable:
            clear = QPushButton("Clear")
            clear.clicked.connect(lambda: self.set_text(""))
            lay.addWidget(clear)

    def text(self) -> str:
        return self.edit.text().strip()

    def set_text(self, text: str) -> None:
        self.edit.setText(text)
        self.changed.emit(self.text())

    def _browse(self) -> None:
        if not _dialogs_allowed():
            return
        start = self.text() or str(Path.home())
        if self.folder:
            chosen = QFileDialog.getExistingDirectory(self, self.caption, start)
        else:
            chosen, _ = QFileDialog.getOpenFileName(self, self.caption, start, self.file_filter)
        if chosen:
            self.set_text(chosen)


class QuantizeOptionsPanel(QGroupBox):
    """All per-job options; :meth:`options` builds a :class:`QuantizeOptions`."""

    out_dir_changed = Signal(str)
    requantize_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Options", parent)
        outer = QVBoxLayout(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.output_type = self._type_combo("Type of output.weight (the output projection)")
        self.embd_type = self._type_combo("Type of token_embd.weight (the token embeddings)")
        form.addRow("Output tensor type", self.output_type)
        form.addRow("Token embedding type", self.embd_type)
        self.leave_output = QCheckBox("Keep the output tensor unquantized")
        self.pure = QCheckBox("Pure: one type for every tensor (no k-quant mixing)")
        self.keep_split = QCheckBox("Keep split shards (as many files as the source)")
        for box in (self.leave_output, self.pure, self.keep_split):
            form.addRow("", box)
        self.imatrix = PathField(
            "optional (.gguf or .dat)",
            False,
            "Importance matrix",
            "imatrix (*.gguf *.dat);;All files (*)",
            clearable=True,
        )
        self.imatrix.setToolTip(
            "An importance matrix from llama-imatrix (.gguf or legacy .dat). IQ1_*, IQ2_*, "
            "IQ3_XXS, IQ3_XS and Q2_K_S need one; it also improves the other low-bit types."
        )
        form.addRow("Importance matrix", self.imatrix)
        self.threads = QSpinBox()
        self.threads.setRange(0, 512)
        self.threads.setSpecialValueText("all cores")
        self.threads.setToolTip("Threads for the quantizer; 'all cores' lets llama.cpp choose")
        form.addRow("Threads", self.threads)
        self.out_dir = PathField("output folder", True, "Output folder")
        self.out_dir.changed.connect(self.out_dir_changed)
        form.addRow("Output folder", self.out_dir)
        outer.addLayout(form)
        self.requantize = QCheckBox("I understand: requantize an already quantized model")
        self.requantize.setToolTip(
            "Quantizing a quantized model stacks the errors of both. "
            "Prefer an F16/BF16 source when you have one."
        )
        self.requantize.toggled.connect(self.requantize_changed)
        self.requantize_warning = QLabel()
        self.requantize_warning.setWordWrap(True)
        self.requantize_warning.setStyleSheet("color: #c77700;")
        self.requantize_warning.hide()
        outer.addWidget(self.requantize_warning)
        outer.addWidget(self.requantize)

    @staticmethod
    def _type_combo(tip: str) -> QComboBox:
        combo = QComboBox()
        combo.addItem(AUTO)
        combo.addItems(TENSOR_TYPES)
        combo.setToolTip(tip + "; 'automatic' keeps llama.cpp's choice for the target type")
        return combo

    def set_source_quantized(self, file_type: str | None) -> None:
        """Show the requantize warning when the source is not F32/F16/BF16."""
        quantized = bool(file_type) and file_type not in ("F32", "F16", "BF16", "ALL_F32")
        self.requantize_warning.setVisible(quantized)
        if quantized:
            self.requantize_warning.setText(
                f"⚠ The source is already quantized ({file_type}). Requantizing adds its error "
                "to the new one; use an F16/BF16 model when you can."
            )

    def options(self) -> QuantizeOptions:
        def combo(c: QComboBox) -> str | None:
            return None if c.currentText() == AUTO else c.currentText()

        return QuantizeOptions(
            out_dir=self.out_dir.text() or None,
            allow_requantize=self.requantize.isChecked(),
            imatrix=self.imatrix.text() or None,
            output_tensor_type=combo(self.output_type),
            token_embedding_type=combo(self.embd_type),
            leave_output_tensor=self.leave_output.isChecked(),
            pure=self.pure.isChecked(),
            keep_split=self.keep_split.isChecked(),
            nthread=self.threads.value(),
        )
