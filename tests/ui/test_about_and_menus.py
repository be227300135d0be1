"""The menu bar (File: Open, Recent, Quit; Help: About) and the About box's versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import qVersion
from PySide6.QtWidgets import QMenu

from qtapp import __version__
from qtapp.core.app import versions
from qtapp.core.app.settings import Settings
from qtapp.ui import about
from qtapp.ui.main_window import MainWindow
from qtapp.ui.menus import fill_recent


def test_menus_and_recent(qtbot, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    s = Settings.load()
    s.add_recent(str(tiny_model))
    s.save()
    win = MainWindow()
    qtbot.addWidget(win)
    titles = [a.text() for a in win.menuBar().actions()]
    assert titles == ["&File", "&Help"]
    file_menu = win.menuBar().actions()[0].menu()
    shortcuts = {a.text(): a.shortcut().toString() for a in file_menu.actions()}
    assert shortcuts["&Open model…"] == "Ctrl+O" and shortcuts["&Quit"] == "Ctrl+Q"
    recent = win.findChild(QMenu, "recentMenu")
    fill_recent(recent, win)
    [entry] = recent.actions()
    assert entry.text() == tiny_model.name and entry.isEnabled()
    entry.trigger()
    assert win.ctx.model_path == tiny_model and win.current_page_key() == "fit"
    win.close()


def test_about_box_versions(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(about, "llama_cpp_description", lambda: "0.3.36 (llama.cpp b1, CPU)")
    monkeypatch.setattr(about, "nvidia_driver_version", lambda: None)
    box = about.AboutDialog()
    qtbot.addWidget(box)
    assert box.values["QuantLens"].text() == __version__
    assert box.values["Qt"].text() == qVersion()
    qtbot.waitUntil(lambda: box.values["llama.cpp"].text() != about.LOOKING, timeout=10_000)
    assert box.values["llama.cpp"].text() == "0.3.36 (llama.cpp b1, CPU)"
    assert box.values["NVIDIA driver"].text().startswith("none")
    assert "PySide6: " in box.text()
    box.close()


def test_versions_without_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if not installed
    assert versions.nvidia_driver_version() is None
    assert versions.base_versions()["QuantLens"] == __version__
