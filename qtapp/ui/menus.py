"""The window's menu bar: File (Open model…, Recent, Quit) and Help (About)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu

from qtapp.core.app.settings import Settings


def install_menus(window: QMainWindow) -> None:
    """Add the menus to a window that has ``open_model(path)``."""
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    open_action = QAction("&Open model…", window)
    open_action.setShortcut(QKeySequence.StandardKey.Open)
    open_action.triggered.connect(lambda: choose_and_open(window))
    file_menu.addAction(open_action)
    recent = file_menu.addMenu("Open &recent")
    recent.setObjectName("recentMenu")
    recent.aboutToShow.connect(lambda: fill_recent(recent, window))
    fill_recent(recent, window)
    file_menu.addSeparator()
    quit_action = QAction("&Quit", window)
    quit_action.setShortcut(QKeySequence("Ctrl+Q"))
    quit_action.triggered.connect(window.close)
    file_menu.addAction(quit_action)

    help_menu = bar.addMenu("&Help")
    about = QAction("&About QuantLens", window)
    about.triggered.connect(lambda: _about(window))
    help_menu.addAction(about)


def choose_and_open(window: QMainWindow) -> None:
    path, _ = QFileDialog.getOpenFileName(
        window, "Open a GGUF model", str(Path.home()), "GGUF models (*.gguf);;All files (*)"
    )
    if path:
        window.open_model(path)  # type: ignore[attr-defined]


def fill_recent(menu: QMenu, window: QMainWindow) -> None:
    menu.clear()
    models = Settings.load().recent_models
    for model in models:
        action = menu.addAction(Path(model).name)
        action.setToolTip(model)
        action.setStatusTip(model)
        action.setEnabled(Path(model).exists())
        action.triggered.connect(lambda _=False, m=model: window.open_model(m))  # type: ignore[attr-defined]
    if not models:
        menu.addAction("No recent models").setEnabled(False)


def _about(window: QMainWindow) -> None:
    from qtapp.ui.about import show_about

    window._about = show_about(window)  # type: ignore[attr-defined]
