"""The Quantize page's importance-matrix box (issue #14): make one in the background, progress
and ETA, immediate cancel with nothing left behind, the result kept by the model's fingerprint
and offered for types that need or benefit from one, the overlap warning, refused types marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtapp.core.quantize.imatrix_jobs import default_calibration_text, store_root, stored_for
from qtapp.ui.common.context import AppContext
from qtapp.ui.quantize.page import Page

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def page(qtbot, tmp_path: Path, tiny_model: Path):
    ctx = AppContext()
    widget = Page(ctx)
    qtbot.addWidget(widget)
    widget.resize(1200, 900)
    widget.show()
    widget.options.out_dir.set_text(str(tmp_path / "out"))
    widget.set_source(tiny_model)
    yield widget
    widget.shutdown()
    ctx.jobs.shutdown()


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_make_offer_and_use(qtbot, page: Page, tiny_model: Path) -> None:
    maker = page.imatrix_maker
    qtbot.waitUntil(lambda: maker.model == tiny_model, timeout=5000)
    page.picker.set_checked(["IQ2_XS"])
    qtbot.waitUntil(lambda: "IQ2_XS needs an importance matrix" in maker.note.text(), timeout=5000)
    assert "refuses" in maker.note.text()  # the why
    assert page.options.imatrix.text() == ""
    maker.chunks.setValue(2)
    qtbot.mouseClick(maker.make_button, qtbot_left())
    assert not maker.make_button.isEnabled()  # one at a time
    pending = page.options.imatrix.text()
    assert pending.endswith(".imatrix.gguf") and "Making the matrix" in maker.note.text()
    # a quant queued now waits for the matrix (one job at a time) and uses it
    (out,) = page.queue(tiny_model, ["IQ2_XS"])
    row = page.rows[-1]
    qtbot.waitUntil(lambda: row.done, timeout=120000)
    assert row.state == "finished", row.message
    assert maker.runner is None
    made = stored_for(tiny_model)
    assert [str(p) for p in made] == [pending] and made[0].is_file()
    assert page.options.imatrix.text() == str(made[0])
    assert out.is_file()
    assert maker.bar.text().startswith("done: 2 chunks")
    assert "Using the matrix made in QuantLens" in maker.note.text()
    # cleared, then a type that benefits is ticked: the stored matrix is offered again
    page.picker.set_checked([])
    page.options.imatrix.set_text("")
    page.picker.set_checked(["Q2_K"])
    qtbot.waitUntil(lambda: page.options.imatrix.text() == str(made[0]), timeout=5000)
    # and a type that gains nothing does not bring it back
    page.options.imatrix.set_text("")
    page.picker.set_checked(["Q8_0"])
    assert page.options.imatrix.text() == ""


def test_cancel_is_immediate_and_leaves_nothing(qtbot, page: Page, tiny_model: Path) -> None:
    maker = page.imatrix_maker
    qtbot.waitUntil(lambda: maker.model == tiny_model, timeout=5000)
    maker.chunks.setValue(0)  # the whole text: long enough to cancel mid-way
    maker.make()
    qtbot.waitUntil(lambda: "ETA" in maker.bar.text() and maker.bar.value() > 0, timeout=60000)
    qtbot.mouseClick(maker.cancel_button, qtbot_left())
    qtbot.waitUntil(lambda: maker.runner is None, timeout=10000)
    assert maker.bar.text().startswith("cancelled")
    assert _files_under(store_root()) == []  # no .part, no file
    assert page.options.imatrix.text() == ""


def test_overlap_warning_and_failure_message(
    qtbot, page: Page, tiny_model: Path, tmp_path: Path
) -> None:
    maker = page.imatrix_maker
    qtbot.waitUntil(lambda: maker.model == tiny_model, timeout=5000)
    assert maker.warning.isHidden()  # the bundled texts are different books
    genesis = default_calibration_text().with_name("kjv-genesis-exodus.txt")
    maker.text.set_text(str(genesis))
    qtbot.waitUntil(lambda: maker.warning.isVisible(), timeout=5000)
    assert "100% of the calibration text" in maker.warning.text()
    short = tmp_path / "short.txt"
    short.write_text("A few words only.\n")
    maker.text.set_text(str(short))
    qtbot.waitUntil(lambda: maker.warning.isHidden(), timeout=5000)
    maker.make()
    qtbot.waitUntil(lambda: maker.runner is None, timeout=60000)
    assert maker.error.isVisible() and "tokens" in maker.error.text()
    assert maker.bar.text() == "failed"
    assert _files_under(store_root()) == []


def test_refused_types_are_marked_with_why(page: Page) -> None:
    item = page.picker._items["IQ2_XS"]
    assert "needs imatrix" in item.text(2)
    assert "refuses to quantize to IQ2_XS without an importance matrix" in item.toolTip(0)


def qtbot_left():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton
