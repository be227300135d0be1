"""Work spread over event-loop turns: one call per turn, in order; flush and clear."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication

from qtapp.ui.common.turns import TurnQueue

pytestmark = pytest.mark.timeout(60)


def test_one_call_per_turn_in_order(qtbot) -> None:  # type: ignore[no-untyped-def]
    turns = TurnQueue()
    done: list[int] = []
    for i in range(4):
        turns.add(lambda i=i: done.append(i))
    assert done == [] and turns.pending() == 4
    seen = [0]
    for _ in range(50):
        QApplication.processEvents()
        assert len(done) - seen[0] <= 1, "two queued calls ran in one turn"
        seen[0] = len(done)
        if len(done) == 4:
            break
    qtbot.waitUntil(lambda: done == [0, 1, 2, 3], timeout=5000)
    assert turns.pending() == 0


def test_flush_runs_the_rest_now_and_clear_drops_it(qtbot) -> None:  # type: ignore[no-untyped-def]
    turns = TurnQueue()
    done: list[str] = []
    turns.add(lambda: done.append("a"))
    turns.add(lambda: done.append("b"))
    turns.flush()
    assert done == ["a", "b"] and turns.pending() == 0
    turns.add(lambda: done.append("c"))
    turns.clear()
    turns.add(lambda: done.append("d"))  # calls run in order: "c" would come before it
    qtbot.waitUntil(lambda: "d" in done, timeout=5000)
    assert done == ["a", "b", "d"]


def test_a_paint_hold_releases_only_what_it_turned_off(qtbot) -> None:
    from PySide6.QtWidgets import QWidget

    from qtapp.ui.common.turns import PaintHold

    mine, theirs = QWidget(), QWidget()
    qtbot.addWidget(mine)
    qtbot.addWidget(theirs)
    theirs.setUpdatesEnabled(False)  # kept off by someone else (the page stack)
    holds = [PaintHold(mine), PaintHold(theirs)]
    for hold in holds:
        hold.hold()
    assert not mine.updatesEnabled() and not theirs.updatesEnabled()
    for hold in holds:
        hold.release()
    assert mine.updatesEnabled() and not theirs.updatesEnabled()
