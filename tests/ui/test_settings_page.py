"""The Settings page shows every field, saves changes at once and applies the theme."""

from __future__ import annotations

from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QLineEdit

from qtapp.core.app.settings import Settings
from qtapp.ui.common.context import AppContext
from qtapp.ui.settings.page import Page


def test_fields_load_and_save(qtbot) -> None:  # type: ignore[no-untyped-def]
    Settings(threads=3, default_ctx=8192, kv_type="q8_0", extra_model_dirs=["/m"]).save()
    page = Page(AppContext())
    qtbot.addWidget(page)
    assert page.threads.value() == 3 and page.ctx_size.value() == 8192
    assert page.kv_type.currentText() == "q8_0" and page.dirs.item(0).text() == "/m"
    assert page.threads.specialValueText() == "Auto"
    page.threads.setValue(0)
    page.margin.setValue(2048)
    page.add_model_dir("/more")
    page.eval_text.setText("/no/such/text.txt")
    page.eval_text.editingFinished.emit()
    s = Settings.load()
    assert (s.threads, s.gpu_margin_mib, s.extra_model_dirs) == (0, 2048, ["/m", "/more"])
    assert s.eval_text == "/no/such/text.txt" and "not a file" in page.saved_label.text()
    page.reset()
    assert Settings.load().gpu_margin_mib == 1024 and page.margin.value() == 1024


def test_theme_applies_at_once(qtbot) -> None:  # type: ignore[no-untyped-def]
    page = Page(AppContext())
    qtbot.addWidget(page)
    app = QApplication.instance()
    page.theme.setCurrentIndex(page.theme.findData("dark"))
    assert Settings.load().theme == "dark"
    assert app.palette().color(QPalette.ColorRole.Window).lightness() < 60
    page.theme.setCurrentIndex(page.theme.findData("light"))
    assert app.palette().color(QPalette.ColorRole.Window).lightness() > 200


def test_folders_shown(qtbot) -> None:  # type: ignore[no-untyped-def]
    ctx = AppContext()
    page = Page(ctx)
    qtbot.addWidget(page)
    shown = {w.text() for w in page.findChildren(QLineEdit) if w.isReadOnly()}
    assert {str(ctx.paths.data), str(ctx.paths.logs), str(ctx.paths.config)} <= shown
