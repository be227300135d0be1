"""Helpers for the window's tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PySide6.QtWidgets import QWidget


@pytest.fixture
def shown(qtbot) -> Callable[[QWidget, int, int], QWidget]:
    """Show a widget at a size and wait until it is on screen (closed after the test)."""

    def show(widget: QWidget, width: int, height: int) -> QWidget:
        qtbot.addWidget(widget)
        widget.resize(width, height)
        widget.show()
        qtbot.waitExposed(widget)
        return widget

    return show
