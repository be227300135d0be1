"""The Compare page on a filled results store: table, charts, budget, editing, exports."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from qtapp.core.app.paths import app_paths
from qtapp.core.results.store import ResultsStore
from qtapp.ui.common.context import AppContext
from qtapp.ui.compare.page import Page, detected_budget
from tests.results_factory import fill_store

GIB = 1024**3


@pytest.fixture
def filled() -> list[int]:
    with ResultsStore.open() as store:
        return fill_store(store, points=32)


@pytest.fixture
def page(qtbot, filled: list[int]) -> Page:
    ctx = AppContext()
    p = Page(ctx)
    qtbot.addWidget(p)
    p.resize(1300, 850)
    p.show()
    yield p
    p.shutdown()


def _column(page: Page, key: str) -> int:
    from qtapp.ui.compare.table import TABLE_COLUMNS

    return [c[0] for c in TABLE_COLUMNS].index(key)


def test_page_lists_every_quant_and_shows_the_data_folder(page: Page) -> None:
    assert page.table.model().rowCount() == 16  # 8 quants x 2 models; plans hidden by default
    assert "16 runs of 2 models" in page.summary.text()
    assert str(app_paths().results_db) in page.data_label.text()
    assert "Type a budget" in page.recommendations.text()  # no GPU here, no budget typed
    page.kind_box.setCurrentIndex(page.kind_box.findText("All runs"))
    assert page.table.model().rowCount() == 18
    page.model_box.setCurrentIndex(page.model_box.findText("Gemma 3 270m"))
    assert page.table.model().rowCount() == 9


def test_sorting_by_size_is_numeric(page: Page) -> None:
    col = _column(page, "size_gib")
    page.table.sortByColumn(col, Qt.SortOrder.AscendingOrder)
    model = page.table.model()
    sizes = [float(model.index(r, col).data()) for r in range(model.rowCount())]
    assert sizes == sorted(sizes) and sizes[0] < 0.2 < sizes[-1]


def test_budget_line_fits_column_and_recommendations(page: Page, qtbot) -> None:
    page.budget_edit.setText("1.5GiB")
    page.budget_edit.editingFinished.emit()
    assert "0.5 GiB usable" in page.budget_note.text()
    # the chart is drawn in the turn after the table and the texts
    qtbot.waitUntil(lambda: page.quality_chart.budget_line.value() == pytest.approx(0.5))
    text = page.recommendations.text()
    assert "Gemma 3 1b: Q3_K_M" in text and "Gemma 3 270m: F16" in text
    fits = {r.label: r.fits for r in page.rows if r.model == "Gemma 3 270m"}
    assert fits["Q2_K"] == "1x1.5GiB"

    page.budget_edit.setText("a lot")
    page.budget_edit.editingFinished.emit()
    assert "not a memory budget" in page.budget_note.text()  # said, not crashed
    assert all(r.fits == "" for r in page.rows)


def test_budget_from_detected_gpus() -> None:
    gpus = (SimpleNamespace(free_bytes=40 * GIB), SimpleNamespace(free_bytes=44 * GIB))
    b = detected_budget(SimpleNamespace(gpus=gpus), GIB)
    assert b is not None and b.n_gpus == 2 and b.usable_gib == pytest.approx(82)
    assert detected_budget(SimpleNamespace(gpus=()), GIB) is None
    assert detected_budget(None, GIB) is None


def test_quality_metric_switch_and_curves_of_selected_runs(page: Page, qtbot) -> None:
    page.metric_box.setCurrentIndex(page.metric_box.findData("ppl"))
    qtbot.waitUntil(lambda: "PPL" in page.quality_chart.plotItem.titleLabel.text)
    ids = [r.run_id for r in page.rows if r.label in ("Q8_0", "Q2_K")]
    page.table.select_runs(ids)
    assert page.series_box.count() == 0  # charts on hidden tabs are drawn when shown
    page.tabs.setCurrentIndex(2)
    assert sorted(page.table.selected_run_ids()) == sorted(ids)
    assert page.series_box.currentText() == "ppl"
    curves = page.curves_chart.plotItem.listDataItems()
    assert len(curves) == 4 and all(len(c.xData) == 32 for c in curves)
    page.series_box.setCurrentText("kld")
    assert len(page.curves_chart.plotItem.listDataItems()) == 4


def test_refreshes_when_results_change(page: Page, qtbot) -> None:
    with ResultsStore.open() as store:
        run = store.begin_run("eval", "/m/new-model-Q5_K_S.gguf", "Q5_K_S", model_name="New")
        store.finish_run(run, "finished", {"ppl": 9.5, "bytes": 3 * GIB})
    page.ctx.results_changed.emit()
    qtbot.waitUntil(lambda: page.table.model().rowCount() == 17, timeout=3000)
    assert page.model_box.findText("New") > 0


def test_rename_annotate_delete(page: Page) -> None:
    target = next(r.run_id for r in page.rows if r.label == "Q4_K_M")
    page.table.select_runs([target])
    assert page.rename_button.isEnabled() and page.delete_button.isEnabled()
    assert page.rename_selected("Q4_K_M imatrix")
    assert page.annotate_selected("my pick")
    page.refresh()
    row = next(r for r in page.rows if r.run_id == target)
    assert (row.label, row.note) == ("Q4_K_M imatrix", "my pick")
    page.table.select_runs([target])
    assert page.delete_selected(confirm=False) == 1
    assert target not in {r.run_id for r in page.rows}
    assert page.table.model().rowCount() == 15


def test_exports_from_the_page(page: Page, tmp_path: Path, qtbot) -> None:
    button = page.export_button
    with qtbot.waitSignal(page.ctx.status, timeout=2000) as status:
        path = button.export_to("csv", tmp_path / "t.csv")
    assert "Exported 16 runs" in status.args[0]
    assert len(list(csv.DictReader(path.open()))) == 16
    assert len(json.loads(button.export_to("json", tmp_path / "t.json").read_text())["runs"]) == 16
    assert button.export_to("html", tmp_path / "t.html").read_text().count("<svg") == 2
    assert button.export_to("md", tmp_path / "t.md").read_text().startswith("| Model")
    png = button.export_chart("quality", ".png", tmp_path / "q.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = button.export_chart("speed", ".svg", tmp_path / "s.svg")
    assert "<svg" in svg.read_text()
    # an unwritable target is reported, not raised
    assert button.export_to("csv", tmp_path / "no-such-dir" / "t.csv") is None


@pytest.mark.skipif(os.name != "posix", reason="uses a dead POSIX pid")
def test_start_marks_dead_runs_interrupted_and_cleans_part_files(qtbot) -> None:
    with ResultsStore.open() as store:
        run = store.begin_run("quantize", "/m/x.gguf", "Q4_K_M")
        store._db.execute("UPDATE runs SET pid = 999999999 WHERE id = ?", (run,))
    leftover = app_paths().models / "x-Q4_K_M.gguf.part"
    leftover.write_bytes(b"half")
    ctx = AppContext()
    with qtbot.waitSignal(ctx.status, timeout=3000) as status:
        p = Page(ctx)
        qtbot.addWidget(p)
    assert "interrupted" in status.args[0] and "x-Q4_K_M.gguf.part" in status.args[0]
    assert not leftover.exists()
    assert next(r for r in p.rows if r.run_id == run).state == "interrupted"
    p.shutdown()


def test_pyside_keeps_references_to_none_and_true(qtbot) -> None:
    """PySide6 6.12.0 dropped a reference to None on every void call and to True on every emit
    (fatal after a few thousand calls on Python 3.11); pyproject.toml excludes that release."""
    import sys

    from PySide6.QtWidgets import QLabel

    label = QLabel()
    qtbot.addWidget(label)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(2000):
        label.setText("x")
        label.windowTitleChanged.emit("t")
    assert sys.getrefcount(None) >= none_before - 10  # other objects may come and go
    assert sys.getrefcount(True) >= true_before - 10


def test_detected_gpus_set_the_budget_until_a_what_if_is_typed(page: Page, qtbot) -> None:
    gpu = SimpleNamespace(free_bytes=2 * GIB)
    page.ctx.set_hardware(SimpleNamespace(gpus=(gpu,)))
    assert "this PC (1x2GiB free)" in page.budget_note.text()  # 1 GiB usable after the margin
    qtbot.waitUntil(lambda: page.quality_chart.budget_line.value() == pytest.approx(1.0))
    page.budget_edit.setText("2x48GiB")
    page.budget_edit.editingFinished.emit()
    page.ctx.set_hardware(SimpleNamespace(gpus=(SimpleNamespace(free_bytes=8 * GIB),)))
    assert "94.0 GiB usable" in page.budget_note.text()  # the typed budget wins


def test_quality_chart_uses_ppl_when_nothing_has_kld(qtbot) -> None:
    with ResultsStore.open() as store:
        run = store.begin_run("eval", "/m/tiny-Q4_K_M.gguf", "Q4_K_M")
        store.finish_run(run, "finished", {"ppl": 12.5, "ppl_err": 0.3, "bytes": 3 * GIB})
    p = Page(AppContext())
    qtbot.addWidget(p)
    p.show()
    assert p.metric_box.currentData() == "ppl"
    qtbot.waitUntil(lambda: "PPL" in p.quality_chart.plotItem.titleLabel.text)
    with ResultsStore.open() as store:  # a KLD arrives: the chart follows, until the user picks
        run = store.begin_run("eval", "/m/tiny-Q2_K.gguf", "Q2_K")
        store.finish_run(run, "finished", {"ppl": 14.0, "kld_mean": 0.2, "bytes": 2 * GIB})
    p.refresh()
    assert p.metric_box.currentData() == "kld"
    p.shutdown()


def test_models_compare_by_bits_per_byte_and_kld_ranks_within_a_model(page: Page) -> None:
    """Issue 18: no ranking across models uses KLD or the PPL of different vocabularies."""
    assert page.metric_box.currentData() == "bpb"  # two models measured bits per byte
    page.budget_edit.setText("1.5GiB")
    page.budget_edit.editingFinished.emit()
    text = page.recommendations.text()
    assert "bits per byte" in text and "do not say which model" not in text
    for metric in ("kld", "ppl"):
        page.metric_box.setCurrentIndex(page.metric_box.findData(metric))
        assert "do not say which model is better" in page.recommendations.text()
    bpb = {r.label: r.quality("bpb") for r in page.rows if r.model == "Gemma 3 1b"}
    assert bpb["Q2_K"] > bpb["Q8_0"] > 0


def _task_run(store: ResultsStore, model: str, quant: str, gb: float, right: int) -> int:
    run_id = store.begin_run(
        "tasks", f"/models/{model}-{quant}.gguf", quant, model_name=model,
        settings={"tasks_sha256": "5eed", "kind": "hellaswag", "tasks": "/t/hs.txt", "limit": 100},
    )  # fmt: skip
    answers = "1" * right + "0" * (100 - right)
    store.finish_run(run_id, "finished", {"answers": answers, "acc": right, "bytes": gb * 1e9})
    return run_id


def test_model_vs_model_panel_uses_task_accuracy_at_the_budget(page: Page) -> None:
    with ResultsStore.open() as store:
        _task_run(store, "Gemma 3 270m", "F16", 0.54, 70)
        _task_run(store, "Gemma 3 270m", "Q4_K_M", 0.25, 60)
        _task_run(store, "Gemma 3 1b", "Q4_K_M", 0.81, 80)
    page.refresh()
    v = page.versus.result
    assert v is not None and [(s.model, s.label) for s in v.best] == [
        ("Gemma 3 1b", "Q4_K_M"), ("Gemma 3 270m", "F16")
    ]  # fmt: skip
    assert "Gemma 3 1b at Q4_K_M beats Gemma 3 270m at F16 by 10.0 points" in page.versus.text()
    page.budget_edit.setText("1.5GiB")  # 0.5 GiB usable: only the 270m's Q4_K_M fits
    page.budget_edit.editingFinished.emit()
    v = page.versus.result
    assert v is not None and [(s.model, s.label) for s in v.best] == [("Gemma 3 270m", "Q4_K_M")]
    assert v.nothing_fits == ["Gemma 3 1b"] and not v.pairs
    assert "no scored quant fits" in page.versus.text()


def test_a_chart_is_ranged_and_its_axes_laid_out_before_its_first_paint(page: Page) -> None:
    """Left to pyqtgraph the range came inside the first paint, and the wider tick labels it
    brought laid the chart out and painted it again (five paints for one drawing)."""
    chart = page.quality_chart
    page.budget_edit.setText("")
    page._stale.add(0)
    page._draw_tab(0)  # draws the current rows, no event processed since
    view = chart.getViewBox()
    left = chart.getAxis("left")
    ranged, width = view.viewRange(), left.minimumWidth()
    usable = [r.size_gib for r in page.rows if r.size_gib is not None and r.kld_mean]
    assert ranged[0][0] <= min(usable) and max(usable) <= ranged[0][1]  # before any paint
    chart.grab()  # the first paint, then whatever it queued
    for _ in range(5):
        QApplication.processEvents()
    assert view.viewRange() == [pytest.approx(r, rel=1e-6) for r in ranged]
    assert left.minimumWidth() == width


def test_the_pages_chart_is_drawn_then_fitted_in_the_next_turn(page: Page, qtbot) -> None:
    """The page's own drawing (after the table, in a turn of its own) leaves the fit to the
    next turn, with the chart's updates off until then: no paint shows it unfitted."""
    chart = page.quality_chart
    page._stale.add(0)
    page._draw_tab(0, True)
    assert not chart.updatesEnabled()  # drawn, not fitted, not painted
    qtbot.waitUntil(chart.updatesEnabled, timeout=5000)
    ranged, width = chart.getViewBox().viewRange(), chart.getAxis("left").minimumWidth()
    usable = [r.size_gib for r in page.rows if r.size_gib is not None and r.kld_mean]
    assert ranged[0][0] <= min(usable) and max(usable) <= ranged[0][1]
    chart.grab()
    for _ in range(5):
        QApplication.processEvents()
    assert chart.getViewBox().viewRange() == [pytest.approx(r, rel=1e-6) for r in ranged]
    assert chart.getAxis("left").minimumWidth() == width


def test_drawing_one_tab_builds_no_other_tabs_chart(page: Page, qtbot) -> None:
    """The speed and curves charts are built when their tab is first drawn, not with the
    quality chart's drawing (each is a PlotWidget: tens of ms of the GUI thread)."""
    page._stale.add(0)
    page._draw_tab(0, True)
    qtbot.waitUntil(page.quality_chart.updatesEnabled, timeout=5000)
    assert page._speed_chart is None and page._curves_chart is None
    page.tabs.setCurrentIndex(1)
    assert page._speed_chart is not None and page._curves_chart is None
    assert page.chart("curves") is page._curves_chart is not None
