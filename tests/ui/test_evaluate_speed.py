"""Speed against context depth on the Evaluate page (tiny model, real worker): live curves with
their predictions, the stored curve, and depths refused before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qtapp.ui.common.context import AppContext


@pytest.fixture()
def page(qtbot):
    from qtapp.ui.evaluate.page import Page

    ctx = AppContext()
    p = Page(ctx)
    qtbot.addWidget(p)
    p.resize(1280, 860)
    p.show()
    p.controls.ctx.setValue(128)
    p.controls.reps.setValue(2)
    p.controls.threads.setValue(2)
    yield p
    p.shutdown()
    ctx.jobs.shutdown()


@pytest.mark.timeout(240)
def test_depth_curves_stream_with_predictions_and_are_stored(page, qtbot, tiny_model: Path) -> None:
    from qtapp.core.fit.speed_curve import SpeedCurve
    from qtapp.core.results.store import ResultsStore

    page.controls.depths.setText("0, 256,512")
    with qtbot.waitSignal(page.all_done, timeout=200_000):
        page.queue([tiny_model], None, chunks=1, speed=True)
    key = page.ppl_plot.runs()[0]
    for plot in (page.pp_plot, page.tg_plot):
        xs, ys, errs = plot.data(key)
        assert list(xs) == [0, 256, 512] and (ys > 0).all() and (errs >= 0).all()
    # the planner's curve, dashed beside the measured one, and its error per depth
    qtbot.waitUntil(lambda: page.tg_plot.has_run(f"{key}#predicted"), timeout=30_000)
    pred_x, pred_y, _e = page.tg_plot.data(f"{key}#predicted")
    assert list(pred_x) == [0, 256, 512] and pred_y[0] > pred_y[-1] > 0  # depth costs
    errors = page.speed.errors(key, "tg")
    assert [e[0] for e in errors] == [0, 256, 512]
    assert "predicted" in page.speed.note.text() and "at 512" in page.speed.note.text()
    page.wait_stored()
    run = ResultsStore.open().list_runs(kind="eval")[0]
    curve = SpeedCurve.from_json(run.metrics["speed_curve"])
    assert [p.x for p in curve.points] == [0, 256, 512]
    assert curve.at("tg", 512) == pytest.approx(page.tg_plot.data(key)[1][2], rel=1e-3)
    assert run.settings["depths"] == [0, 256, 512]
    assert json.loads(run.metrics["speed_curve"])[0][0] == 0


@pytest.mark.timeout(60)
def test_depth_beyond_the_trained_context_is_refused_before_start(
    page, qtbot, tiny_model: Path
) -> None:
    page.controls.depths.setText("0,100000")
    page.controls.set_models([tiny_model])
    page.controls.speed.setChecked(True)
    page.start()
    qtbot.waitUntil(lambda: "Not started" in page.controls.status.text(), timeout=30_000)
    text = page.controls.status.text()
    assert "trained context" in text and "2,048" in text and "Use depths up to" in text
    assert not page.running() and page.table.rowCount() == 0
    assert page.controls.start_btn.isEnabled()


def test_unreadable_depths_say_so(page, tiny_model: Path) -> None:
    page.controls.depths.setText("0,lots")
    page.controls.set_models([tiny_model])
    page.start()
    assert "Cannot read the depth 'lots'" in page.controls.status.text()
    assert page.table.rowCount() == 0


@pytest.mark.timeout(240)
def test_cancel_keeps_the_measured_depth_points(page, qtbot, tiny_model: Path) -> None:
    from qtapp.core.fit.speed_curve import SpeedCurve
    from qtapp.core.results.store import ResultsStore

    page.controls.threads.setValue(1)
    page.controls.reps.setValue(3)
    page.controls.depths.setText("0,256,1024,1536")
    page.queue([tiny_model], None, chunks=1, speed=True)
    qtbot.waitUntil(lambda: page.running(), timeout=30_000)
    key = page.ppl_plot.runs()[0]
    qtbot.waitUntil(lambda: len(page.tg_plot.data(key)[0]) >= 2, timeout=200_000)
    with qtbot.waitSignal(page.all_done, timeout=30_000):
        page.cancel()
    kept = list(page.tg_plot.data(key)[0])
    assert kept[:2] == [0, 256] and page.table.item(0, 1).text() == "partial"
    page.wait_stored()
    run = ResultsStore.open().list_runs(kind="eval")[0]
    assert run.state == "partial"
    assert [p.x for p in SpeedCurve.from_json(run.metrics["speed_curve"]).points][:2] == [0, 256]


@pytest.mark.timeout(60)
def test_the_note_has_room_for_its_runs_so_the_charts_keep_their_size(shown) -> None:
    """The note under the charts makes room for a run's errors when the run is queued: a line
    more as each run's first speed came in shrank both charts (drawn again each time)."""
    from PySide6.QtWidgets import QApplication

    from qtapp.ui.evaluate.speed_charts import SpeedCurves

    curves = shown(SpeedCurves(), 1000, 520)
    for i in range(3):  # the demo's three quants, queued together
        curves.add_run(f"run{i}", f"gemma-3-270m-Q{i}", "#1f77b4")
    QApplication.processEvents()
    height = curves.pp_plot.height()
    line = "tg predicted 44% high at 0, 58% high at 512, 56% high at 1,024; pp predicted 18% low"
    for n in (1, 2, 3):  # each run's line of errors (two lines wrapped), as its speeds arrive
        runs = [
            f"● gemma-3-270m-Q{i}: {line} at 0, 9% high at 512, 2% high at 1,024" for i in range(n)
        ]
        curves.note.setText("<br>".join([*runs, "Band: ± sd of the repetitions."]))
        QApplication.processEvents()
        lines = (
            curves.note.heightForWidth(curves.note.width())
            // curves.note.fontMetrics().lineSpacing()
        )
        assert lines >= 2 * n  # wrapped, as at the window's usual width
        assert curves.pp_plot.height() == height and curves.tg_plot.height() == height


def test_a_queue_of_runs_makes_its_room_once(shown) -> None:
    """Runs are added one per turn: the room for their errors is made as the queue starts, so
    the charts do not shrink (and get drawn again) in each of those turns."""
    from PySide6.QtWidgets import QApplication

    from qtapp.ui.evaluate.speed_charts import SpeedCurves

    curves = shown(SpeedCurves(), 1000, 520)
    curves.reserve_runs(3)
    QApplication.processEvents()
    height = curves.pp_plot.height()
    for i in range(3):
        curves.add_run(f"run{i}", f"gemma-3-270m-Q{i}", "#1f77b4")
        QApplication.processEvents()
        assert curves.pp_plot.height() == height
