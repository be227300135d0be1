"""A coloured message strip: what happened, why, and (optionally) a command to copy."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

#: level -> (accent colour, translucent background that works on light and dark palettes)
LEVELS = {
    "info": ("#2f7de1", "rgba(47, 125, 225, 0.10)"),
    "warning": ("#d98b00", "rgba(230, 150, 0, 0.13)"),
    "error": ("#d64545", "rgba(214, 69, 69, 0.12)"),
}


class Banner(QFrame):
    """``set_message(level, title, text, command)``; hidden until it has something to say."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.level = "info"
        self._styled_level: str | None = None  # restyling is slow: only when the level changes
        self.title = QLabel()
        self.title.setObjectName("bannerTitle")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.command = QLineEdit()
        self.command.setReadOnly(True)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.command.setFont(mono)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the command to the clipboard")
        self.copy_button.clicked.connect(self.copy_command)
        command_row = QHBoxLayout()
        command_row.setContentsMargins(0, 4, 0, 0)
        command_row.addWidget(self.command, 1)
        command_row.addWidget(self.copy_button)
        self.command_box = QWidget()
        self.command_box.setLayout(command_row)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 10)
        layout.setSpacing(3)
        layout.addWidget(self.title)
        layout.addWidget(self.text)
        layout.addWidget(self.command_box)
        self.hide()

    def set_message(self, level: str, title: str, text: str = "", command: str = "") -> None:
        self.level = level if level in LEVELS else "info"
        if self._styled_level != self.level:
            self._styled_level = self.level
            accent, background = LEVELS[self.level]
            self.setStyleSheet(
                f"QFrame#banner {{ background: {background}; border: 1px solid {accent};"
                f" border-left: 5px solid {accent}; border-radius: 6px; }}"
                f" QLabel#bannerTitle {{ font-weight: 600; color: {accent}; }}"
                " QLabel { background: transparent; border: none; }"
            )
        self.title.setText(title)
        self.text.setText(text)
        self.text.setVisible(bool(text))
        self.command.setText(command)
        self.command.setCursorPosition(0)
        self.command_box.setVisible(bool(command))
        self.show()

    def clear(self) -> None:
        self.hide()

    def copy_command(self) -> None:
        QGuiApplication.clipboard().setText(self.command.text())
        self.copy_button.setText("Copied")
