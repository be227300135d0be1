"""The Compare page's "Speed at your context" tab: measured curves, the figures at the context
the user names, and honesty beyond the measured depths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qtapp.core.results.store import ResultsStore
from qtapp.ui.common.context import AppContext


def _speed_run(store: ResultsStore, name: str, label: str, curve: list[list[float]]) -> int:
    path = Path(f"/models/{name}-{label}.gguf")
    run = store.begin_run("eval", path, label, settings={"model": str(path)})
    metrics = {"speed_curve": json.dumps(curve), "tg_tps": curve[0][3], "pp_tps": curve[0][1]}
    store.finish_run(run, "finished", metrics=metrics)
    return int(run)


@pytest.fixture
def page(qtbot):
    from qtapp.ui.compare.page import Page

    with ResultsStore.open() as store:
        _speed_run(store, "gemma", "Q8_0", [[0, 700, 9, 50, 1], [4096, 500, 9, 30, 1]])
        _speed_run(store, "gemma", "Q4_K_M", [[0, 800, 9, 60, 1], [1024, 700, 9, 50, 1]])
        run = store.begin_run("eval", Path("/models/gemma-Q2_K.gguf"), "Q2_K")
        store.finish_run(run, "finished", metrics={"ppl": 20.0})  # no speed: not listed
    p = Page(AppContext())
    qtbot.addWidget(p)
    p.resize(1300, 850)
    p.show()
    yield p
    p.shutdown()


def test_speed_at_your_context(page, qtbot) -> None:
    tab = page.context_speed
    page.tabs.setCurrentWidget(tab)
    tab.context.setValue(2048)
    by_label = {s.label: s for s in tab.speeds}
    assert set(by_label) == {"Q8_0", "Q4_K_M"}
    # interpolated in time per token between depths 0 and 4096
    assert by_label["Q8_0"].tg == pytest.approx(1 / (0.5 / 50 + 0.5 / 30))
    assert by_label["Q4_K_M"].tg is None  # measured to 1,024 only: nothing made up
    text = tab.panel.text()
    assert "Speed at 2,048 tokens of context" in text
    assert "measured from 0 to 1,024 tokens only" in text
    assert text.index("Q8_0") < text.index("Q4_K_M")  # the figure first, the unknown last
    assert tab.chart.line.value() == 2048
    tab.context.setValue(1024)
    assert {s.label: s.tg for s in tab.speeds}["Q4_K_M"] == pytest.approx(50.0)
    assert "tg 50.0 t/s" in tab.panel.text()


def test_no_speed_says_how_to_measure_it(qtbot) -> None:
    from qtapp.ui.compare.page import Page

    p = Page(AppContext())
    qtbot.addWidget(p)
    p.tabs.setCurrentWidget(p.context_speed)
    assert "quantlens speed MODEL" in p.context_speed.panel.text()
    p.shutdown()
