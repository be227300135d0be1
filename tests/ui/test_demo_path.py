"""The demo path end to end with the tiny model: Welcome -> tour -> every page, hooks chained.

The real pages may or may not have their ``queue`` hooks yet; one test drives the window as
built (a missing hook must give a clear note, a present one must receive the demo's jobs), the
other replaces the Quantize and Evaluate pages with recorders to check the chaining exactly.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from qtapp.core.app import demo
from qtapp.core.app.demo import DEMO_TYPES, TOUR_STEPS
from qtapp.ui.main_window import MainWindow


@pytest.fixture()
def window(qtbot, tiny_model: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(demo, "demo_model_path", lambda progress=None: tiny_model)
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def _start(qtbot, win: MainWindow) -> Any:  # type: ignore[no-untyped-def]
    welcome = win.pages["welcome"]
    with qtbot.waitSignal(welcome.demo_ready, timeout=10_000):
        qtbot.mouseClick(welcome.demo_button, Qt.MouseButton.LeftButton)
    return welcome.tour


def test_tour_walks_every_page(qtbot, window: MainWindow, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    tour = _start(qtbot, window)
    assert window.ctx.model_path == tiny_model
    assert tour.panel is not None and tour.panel.isVisible()
    visited = [window.current_page_key()]
    for _ in TOUR_STEPS[1:]:
        qtbot.mouseClick(tour.panel.next_button, Qt.MouseButton.LeftButton)
        visited.append(window.current_page_key())
        step = TOUR_STEPS[tour.index]
        qtbot.waitUntil(lambda: not tour.actions_pending(), timeout=10_000)
        if step.action == "quantize":
            if getattr(window.pages["quantize"], "queue", None) is None:
                assert "cannot take jobs" in tour.note
            else:
                assert tour.quantize_queued, tour.note
    assert visited == [s.page for s in TOUR_STEPS]
    # the card follows its page one turn later
    qtbot.waitUntil(lambda: tour.panel.next_button.text() == "Finish", timeout=5000)
    assert tour.panel.badge.text().endswith(f"{len(TOUR_STEPS)} of {len(TOUR_STEPS)}")
    qtbot.mouseClick(tour.panel.back_button, Qt.MouseButton.LeftButton)
    assert window.current_page_key() == TOUR_STEPS[-2].page
    with qtbot.waitSignal(tour.finished):
        tour.close()
    assert tour.panel is None


def test_card_follows_its_page_a_turn_later(qtbot, window: MainWindow, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    """A step's page switches and paints in one turn, the card's new text in the next: the two
    in one turn were the tour's longest turn (60-69 ms on two busy cores)."""
    tour = _start(qtbot, window)
    first = tour.panel.badge.text()
    assert first.startswith("Demo tour · 1 of")
    tour.next()
    assert window.current_page_key() == TOUR_STEPS[1].page
    assert tour.panel.badge.text() == first  # not in the page switch's turn
    qtbot.waitUntil(lambda: tour.panel.badge.text().startswith("Demo tour · 2 of"), timeout=5000)
    assert tour.panel.title.text() == TOUR_STEPS[1].title
    tour.close()


class FakeQuantize:
    """Records the tour's calls and 'quantizes' by copying, as a finished job would leave it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, list[str], Path, bool]] = []

    def queue(self, model_path: Path, types: list[str], out_dir: Path, requantize: bool = False):  # type: ignore[no-untyped-def]
        self.calls.append((Path(model_path), list(types), Path(out_dir), requantize))
        outs = []
        for qtype in types:
            out = Path(out_dir) / f"{Path(model_path).stem.split('-')[0]}-{qtype}.gguf"
            shutil.copyfile(model_path, out)
            outs.append(out)
        return outs


class FakeEvaluate:
    def __init__(self) -> None:
        self.calls: list[tuple[list[Path], Path, int, bool]] = []

    def queue(self, models, base, chunks, speed, repetitions=5):  # type: ignore[no-untyped-def]
        self.calls.append((list(models), base, chunks, speed))
        self.repetitions = repetitions


def test_tour_chains_quantize_then_evaluate(qtbot, window: MainWindow, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    quant, evaluate = FakeQuantize(), FakeEvaluate()
    window.pages = {**window.pages, "quantize": quant, "evaluate": evaluate}  # type: ignore[dict-item]
    tour = _start(qtbot, window)
    while TOUR_STEPS[tour.index].action != "quantize":
        tour.next()
    assert tour.actions_pending() and not quant.calls  # not in the turn of the page switch
    qtbot.waitUntil(lambda: not tour.actions_pending(), timeout=10_000)  # after the page's paint
    # first the F16 base from the demo model, then the three types from that base
    assert quant.calls[0][:2] == (tiny_model, ["F16"]) and quant.calls[0][3] is True
    f16 = quant.calls[1][0]
    assert f16.name.endswith("-F16.gguf") and f16.exists()
    assert quant.calls[1][1] == list(DEMO_TYPES)
    assert tour.note.startswith("Done:")  # the quants are there: say so
    tour.next()  # evaluate: the quants exist, so it queues at once
    qtbot.waitUntil(lambda: not tour.actions_pending(), timeout=10_000)
    assert len(evaluate.calls) == 1
    models, base, chunks, speed = evaluate.calls[0]
    assert [m.name.split("-")[-1] for m in models] == [f"{t}.gguf" for t in DEMO_TYPES]
    assert base == f16 and chunks == demo.DEMO_EVAL_CHUNKS and speed is True
    tour.back()
    tour.next()  # visiting again does not queue twice
    qtbot.waitUntil(lambda: not tour.actions_pending(), timeout=10_000)
    assert len(evaluate.calls) == 1 and len(quant.calls) == 2
    tour.close()


def test_evaluate_waits_for_quants(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    """A real quantize page returns before its jobs finish: evaluation must wait for files."""

    class SlowQuantize(FakeQuantize):
        def queue(self, model_path, types, out_dir, requantize=False):  # type: ignore[no-untyped-def]
            self.calls.append((Path(model_path), list(types), Path(out_dir), requantize))
            return [Path(out_dir) / f"later-{t}.gguf" for t in types]

    quant, evaluate = SlowQuantize(), FakeEvaluate()
    window.pages = {**window.pages, "quantize": quant, "evaluate": evaluate}  # type: ignore[dict-item]
    tour = _start(qtbot, window)
    while TOUR_STEPS[tour.index].action != "evaluate":
        tour.next()
    qtbot.waitUntil(lambda: not tour.actions_pending(), timeout=10_000)
    assert len(quant.calls) == 1 and not evaluate.calls  # the F16 is not there yet
    assert "Waiting for the quants: 0 of 3" in tour.note
    out_dir = quant.calls[0][2]
    (out_dir / "later-F16.gguf").write_bytes(b"GGUF")
    window.ctx.jobs.queue_changed.emit()  # what a finished job does
    assert len(quant.calls) == 2 and quant.calls[1][0] == out_dir / "later-F16.gguf"
    for qtype in DEMO_TYPES:
        (out_dir / f"later-{qtype}.gguf").write_bytes(b"GGUF")
    window.ctx.jobs.queue_changed.emit()
    assert len(evaluate.calls) == 1 and "Evaluating" in tour.note
    tour.close()


def test_hooks_that_emit_queue_changed_do_not_recurse(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    """The real Quantize page submits jobs, and the job queue signals at once: no re-entry."""
    evaluate = FakeEvaluate()

    class Reentrant(FakeQuantize):
        def queue(self, model_path, types, out_dir, requantize=False):  # type: ignore[no-untyped-def]
            outs = super().queue(model_path, types, out_dir, requantize)
            window.ctx.jobs.queue_changed.emit()  # what ctx.jobs.submit does
            return outs

    quant = Reentrant()
    window.pages = {**window.pages, "quantize": quant, "evaluate": evaluate}  # type: ignore[dict-item]
    tour = _start(qtbot, window)
    while TOUR_STEPS[tour.index].action != "evaluate":
        tour.next()
    qtbot.waitUntil(lambda: not tour.actions_pending(), timeout=10_000)
    assert [c[1] for c in quant.calls] == [["F16"], list(DEMO_TYPES)]
    assert len(evaluate.calls) == 1
    tour.close()
