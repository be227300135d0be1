"""The About box: versions of QuantLens, llama.cpp, Qt, PySide6 and the NVIDIA driver.

llama.cpp's version needs the worker child (``llama_info`` job, cached on disk after the first
time) and the driver needs NVML, so both are filled in from a background call.
"""

from __future__ import annotations

import PySide6
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.app.paths import resources_dir
from qtapp.core.app.versions import base_versions, llama_cpp_description, nvidia_driver_version
from qtapp.ui.common.background import BackgroundCall

LOOKING = "looking…"
_running: set[BackgroundCall] = set()


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About QuantLens")
        self.setMinimumWidth(520)
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        icon = QLabel()
        icon_file = resources_dir() / "icons" / "quantlens.svg"
        if icon_file.exists():
            icon.setPixmap(QIcon(str(icon_file)).pixmap(64, 64))
        text = QLabel(
            "<b style='font-size:15pt'>QuantLens</b><br>"
            "Which llama.cpp quantization fits your GPUs, and what it costs in quality "
            "and speed.<br>MIT licence."
        )
        text.setWordWrap(True)
        top.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(text, 1)
        lay.addLayout(top)

        self.form = QFormLayout()
        self.values: dict[str, QLabel] = {}
        versions = base_versions()
        rows = [
            ("QuantLens", versions["QuantLens"]),
            ("llama.cpp", LOOKING),
            ("NVIDIA driver", LOOKING),
            ("Qt", qVersion()),
            ("PySide6", PySide6.__version__),
            ("Python", versions["Python"]),
            ("gguf", versions["gguf"]),
            ("pyqtgraph", versions["pyqtgraph"]),
            ("System", versions["System"]),
        ]
        for name, value in rows:
            label = QLabel(value)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(True)
            self.values[name] = label
            self.form.addRow(f"{name}:", label)
        lay.addLayout(self.form)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        copy.setToolTip("Copy these versions, for a bug report")
        copy.clicked.connect(self.copy)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)

        def task(call: BackgroundCall) -> dict[str, str]:
            driver = nvidia_driver_version()
            return {
                "NVIDIA driver": driver or "none (no NVIDIA GPU seen)",
                "llama.cpp": llama_cpp_description(),
            }

        self._call = BackgroundCall(task, "about-versions")  # no parent: may outlive the box
        call = self._call
        _running.add(call)
        call.finished.connect(lambda _r, c=call: _running.discard(c))
        call.failed.connect(lambda _m, c=call: _running.discard(c))
        self._call.finished.connect(self._fill)
        self._call.failed.connect(lambda msg: self._fill({"llama.cpp": f"unknown ({msg})"}))
        self._call.start()

    def _fill(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            if name in self.values:
                self.values[name].setText(value)

    def text(self) -> str:
        return "\n".join(f"{name}: {label.text()}" for name, label in self.values.items())

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text())

    def done(self, result: int) -> None:
        self._call.cancel()
        self._call.wait(0.1)
        super().done(result)


def show_about(parent: QWidget | None = None) -> AboutDialog:
    dialog = AboutDialog(parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.show()
    return dialog
