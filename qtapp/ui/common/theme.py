"""Light and dark palettes on the Fusion style; "system" follows the OS colour scheme live."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from qtapp.core.app.paths import resources_dir

log = logging.getLogger(__name__)

ACCENT = "#2f7de1"
_current = {"theme": "system", "connected": False}


def _palette(dark: bool) -> QPalette:
    pal = QPalette()
    if dark:
        colors = {
            QPalette.ColorRole.Window: "#202225",
            QPalette.ColorRole.WindowText: "#e6e6e6",
            QPalette.ColorRole.Base: "#17181a",
            QPalette.ColorRole.AlternateBase: "#25272b",
            QPalette.ColorRole.ToolTipBase: "#2b2d31",
            QPalette.ColorRole.ToolTipText: "#e6e6e6",
            QPalette.ColorRole.PlaceholderText: "#8a8d93",
            QPalette.ColorRole.Text: "#e6e6e6",
            QPalette.ColorRole.Button: "#2b2d31",
            QPalette.ColorRole.ButtonText: "#e6e6e6",
            QPalette.ColorRole.BrightText: "#ff6b6b",
            QPalette.ColorRole.Link: "#6aa9ff",
            QPalette.ColorRole.Highlight: ACCENT,
            QPalette.ColorRole.HighlightedText: "#ffffff",
            QPalette.ColorRole.Mid: "#3a3d42",
            QPalette.ColorRole.Midlight: "#34373c",
            QPalette.ColorRole.Dark: "#141517",
            QPalette.ColorRole.Light: "#45484e",
        }
        disabled = "#6b6e74"
    else:
        colors = {
            QPalette.ColorRole.Window: "#f4f5f7",
            QPalette.ColorRole.WindowText: "#1d1f23",
            QPalette.ColorRole.Base: "#ffffff",
            QPalette.ColorRole.AlternateBase: "#f0f2f5",
            QPalette.ColorRole.ToolTipBase: "#ffffff",
            QPalette.ColorRole.ToolTipText: "#1d1f23",
            QPalette.ColorRole.PlaceholderText: "#8a8f98",
            QPalette.ColorRole.Text: "#1d1f23",
            QPalette.ColorRole.Button: "#ffffff",
            QPalette.ColorRole.ButtonText: "#1d1f23",
            QPalette.ColorRole.BrightText: "#c62828",
            QPalette.ColorRole.Link: "#1f63c6",
            QPalette.ColorRole.Highlight: ACCENT,
            QPalette.ColorRole.HighlightedText: "#ffffff",
            QPalette.ColorRole.Mid: "#c9ccd1",
            QPalette.ColorRole.Midlight: "#e3e5e8",
            QPalette.ColorRole.Dark: "#a0a4ab",
            QPalette.ColorRole.Light: "#ffffff",
        }
        disabled = "#9a9ea6"
    for role, value in colors.items():
        pal.setColor(role, QColor(value))
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(disabled))
    return pal


def system_prefers_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    return bool(scheme is not None and scheme() == Qt.ColorScheme.Dark)


def is_dark(theme: str) -> bool:
    if theme == "dark":
        return True
    if theme == "light":
        return False
    return system_prefers_dark()


def _stylesheet(dark: bool) -> str:
    path = resources_dir() / "style.qss"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return ""
    nav_bg, nav_fg, nav_hover = (
        ("#1a1b1e", "#cfd2d6", "#2a2c30") if dark else ("#e9ecf0", "#30343a", "#dde1e6")
    )
    return (
        text.replace("@NAV_BG@", nav_bg)
        .replace("@NAV_FG@", nav_fg)
        .replace("@NAV_HOVER@", nav_hover)
        .replace("@ACCENT@", ACCENT)
    )


def apply_theme(theme: str, app: QApplication | None = None) -> bool:
    """Apply "system", "light" or "dark" at once; returns whether the dark palette is in use."""
    app = app or QApplication.instance()  # type: ignore[assignment]
    if app is None:
        return False
    _current["theme"] = theme
    dark = is_dark(theme)
    app.setStyle("Fusion")
    app.setPalette(_palette(dark))
    app.setStyleSheet(_stylesheet(dark))
    app.setProperty("quantlens_dark", dark)
    if not _current["connected"]:
        hints = QGuiApplication.styleHints()
        signal = getattr(hints, "colorSchemeChanged", None)
        if signal is not None:
            signal.connect(_on_system_scheme_changed)
            _current["connected"] = True
    return dark


def _on_system_scheme_changed(*_args: object) -> None:
    if _current["theme"] == "system":
        log.info("System colour scheme changed; following it")
        apply_theme("system")


def current_is_dark() -> bool:
    app = QApplication.instance()
    return bool(app is not None and app.property("quantlens_dark"))
