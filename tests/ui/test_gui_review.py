"""Regressions found by driving the whole window with bad input and awkward sequences."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from qtapp.ui.main_window import MainWindow


def _window(qtbot) -> MainWindow:
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    return window


def test_a_model_that_fails_to_open_does_not_leave_the_previous_one_shown(
    qtbot, tiny_model: Path, tmp_path: Path
) -> None:
    window = _window(qtbot)
    fit = window.pages["fit"]
    window.open_model(tiny_model)
    qtbot.waitUntil(lambda: fit.model is not None and fit.table.model().rowCount() > 0)
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(tiny_model.read_bytes()[:100])
    window.open_model(truncated)
    qtbot.waitUntil(lambda: fit.banner.level == "error")
    assert "cut.gguf" in fit.banner.text.text() and "truncated" in fit.banner.text.text()
    assert fit.model is None and fit.plan is None
    assert fit.table.model().rowCount() == 0  # not the previous model's plan
    assert fit.card.values["name"].text() == "—"
    assert not fit.quantize_button.isEnabled()
    window.open_model(tiny_model)  # a good model afterwards works again
    qtbot.waitUntil(lambda: fit.model is not None and fit.table.model().rowCount() > 0)
    assert fit.banner.level != "error"
    window.close()


def test_a_slow_read_of_an_earlier_file_does_not_overwrite_the_latest(
    qtbot, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qtapp.ui.fit import page as fit_page

    gate = threading.Event()
    real = fit_page._read_for_plan
    slow = tmp_path / "slow.gguf"

    def read(path: Path):  # noqa: ANN202 - the page's reader, with one file held back
        if path == slow:
            gate.wait(10)
            raise OSError("slow.gguf went away")
        return real(path)

    monkeypatch.setattr(fit_page, "_read_for_plan", read)
    window = _window(qtbot)
    fit = window.pages["fit"]
    window.open_model(slow)
    first = fit._loader
    window.open_model(tiny_model)
    qtbot.waitUntil(lambda: fit.model is not None)
    with qtbot.waitSignal(first.failed):
        gate.set()
    assert fit.model is not None and fit.model.path == tiny_model
    assert fit.banner.level != "error"
    assert fit.table.model().rowCount() > 0
    window.close()


def test_the_same_output_is_not_queued_twice(qtbot, tiny_model: Path, tmp_path: Path) -> None:
    window = _window(qtbot)
    page = window.pages["quantize"]
    messages: list[str] = []
    window.ctx.status.connect(messages.append)
    first = page.queue(tiny_model, ["Q4_0"], tmp_path / "out")
    again = page.queue(tiny_model, ["Q4_0", "Q4_0"], tmp_path / "out")
    assert first == again[:1]
    assert len(page.rows) == 1
    assert any("Already queued" in m and "Q4_0" in m for m in messages)
    qtbot.waitUntil(lambda: page.rows[0].done, timeout=60_000)
    assert page.rows[0].state == "finished"
    window.close()


def test_closing_during_queued_evaluations_records_them_and_raises_nothing(
    qtbot, tiny_model: Path
) -> None:
    window = _window(qtbot)
    page = window.pages["evaluate"]
    page.queue([tiny_model, tiny_model, tiny_model], None, chunks=1, speed=False)
    qtbot.waitUntil(lambda: window.ctx.jobs.current is not None)
    window.close()  # pytest-qt fails the test on an exception raised in a slot
    assert window.ctx.jobs.pending() == []
    assert all(rv.recorder.state != "running" for rv in page._runs)
    from qtapp.core.results.store import ResultsStore

    store = ResultsStore.open()
    assert all(r.state != "running" for r in store.list_runs())
    store.close()


def test_cancel_with_queued_evaluations_lets_the_user_start_again(qtbot, tiny_model: Path) -> None:
    window = _window(qtbot)
    page = window.pages["evaluate"]
    page.queue([tiny_model, tiny_model, tiny_model], None, chunks=1, speed=True)
    qtbot.waitUntil(lambda: window.ctx.jobs.current is not None)
    with qtbot.waitSignal(page.all_done, timeout=30_000):
        page.controls.cancel_btn.click()
    assert not page.running()
    assert page.controls.start_btn.isEnabled() and not page.controls.cancel_btn.isEnabled()
    assert [page.table.item(r, 1).text() for r in (1, 2)] == ["cancelled", "cancelled"]
    window.close()


def test_a_chart_export_that_writes_nothing_says_so(qtbot, tmp_path: Path) -> None:
    window = _window(qtbot)
    not_a_folder = tmp_path / "afile"
    not_a_folder.write_text("x")
    messages: list[str] = []
    window.ctx.status.connect(messages.append)
    compare = window.pages["compare"]
    assert compare.export_button.export_chart("quality", ".png", not_a_folder / "q.png") is None
    assert messages and "Could not write" in messages[-1]
    evaluate = window.pages["evaluate"]
    with pytest.raises(OSError):
        evaluate.export(not_a_folder, "png")
    assert evaluate.export(tmp_path / "charts", "png")[0].stat().st_size > 0
    window.close()


def test_the_window_starts_with_out_of_range_numbers_in_the_settings_file(
    qtbot, quantlens_home: Path
) -> None:
    from qtapp.core.app.paths import app_paths

    settings_file = app_paths().settings_file
    settings_file.parent.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(
        json.dumps({"version": 2, "threads": 10**12, "default_ctx": 10**15, "first_run_done": True})
    )
    window = _window(qtbot)
    page = window.pages["settings"]
    # out-of-range numbers fall back to the defaults (core), and the page shows them
    assert page.threads.value() == 0  # auto
    assert page.ctx_size.value() == 4096
    window.close()
