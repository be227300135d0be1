"""The Welcome page: recent models, opening, first run, and the demo button's background work."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from qtapp.core.app import demo
from qtapp.core.app.settings import Settings
from qtapp.core.errors import QuantLensError
from qtapp.ui.common.context import AppContext
from qtapp.ui.welcome.page import Page


@pytest.fixture()
def page(qtbot):  # type: ignore[no-untyped-def]
    ctx = AppContext()
    widget = Page(ctx)
    qtbot.addWidget(widget)
    yield widget
    widget.shutdown()


def test_recent_models_listed_and_opened(qtbot, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    s = Settings.load()
    s.add_recent("/nowhere/gone.gguf")
    s.add_recent(str(tiny_model))
    s.save()
    ctx = AppContext()
    widget = Page(ctx)
    qtbot.addWidget(widget)
    assert widget.recent.count() == 2
    first = widget.recent.item(0)
    assert first.data(Qt.ItemDataRole.UserRole) == str(tiny_model)
    assert "no longer there" in widget.recent.item(1).text()
    with qtbot.waitSignal(ctx.navigate) as nav:
        widget.recent.itemActivated.emit(first)
    assert nav.args == ["fit"] and ctx.model_path == tiny_model
    widget.recent.itemActivated.emit(widget.recent.item(1))  # gone: a message, no navigation
    assert "no longer there" in widget.status.text()


def test_opening_remembers_recent(page: Page, tiny_model: Path) -> None:
    page.ctx.open_model(tiny_model)
    assert Settings.load().recent_models == [str(tiny_model.absolute())]
    assert page.recent.item(0).data(Qt.ItemDataRole.UserRole) == str(tiny_model.absolute())


def test_first_run_marked_when_shown(qtbot, page: Page) -> None:  # type: ignore[no-untyped-def]
    assert Settings.load().first_run_done is False
    page.show()
    qtbot.waitUntil(lambda: Settings.load().first_run_done)


def test_demo_button_assembles_then_opens(
    qtbot,
    page: Page,
    tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    seen: list[float] = []

    def fake(progress=None):  # type: ignore[no-untyped-def]
        for f in (0.25, 0.5, 1.0):
            seen.append(f)
            progress(f, "Unpacking the demo model")
        return tiny_model

    monkeypatch.setattr(demo, "demo_model_path", fake)
    with qtbot.waitSignal(page.demo_ready, timeout=10_000) as ready:
        qtbot.mouseClick(page.demo_button, Qt.MouseButton.LeftButton)
    assert ready.args == [tiny_model] and page.ctx.model_path == tiny_model
    assert seen == [0.25, 0.5, 1.0] and page.demo_button.isEnabled()
    assert page.tour is not None and page.tour.index == 0


def test_demo_failure_is_explained(qtbot, page: Page, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    def broken(progress=None):  # type: ignore[no-untyped-def]
        raise QuantLensError("The demo model package is not installed.", "pip install it")

    monkeypatch.setattr(demo, "demo_model_path", broken)
    page.start_demo()
    qtbot.waitUntil(lambda: "not installed" in page.status.text())
    qtbot.waitUntil(page.demo_button.isEnabled)
    assert page.ctx.model_path is None and page.tour is None
