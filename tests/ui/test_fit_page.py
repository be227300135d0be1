"""The Fit page: opens a model, plans it, swaps in exact figures, reacts to controls."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from qtapp.testing.archs import write_tiny_gemma3, write_tiny_qwen3moe
from qtapp.ui.common.context import AppContext
from qtapp.ui.fit.page import Page
from qtapp.ui.fit.table import _gib


@pytest.fixture
def page(qtbot, quantlens_home: Path):  # noqa: ANN001, ANN201 - pytest-qt fixture
    ctx = AppContext()
    p = Page(ctx)
    qtbot.addWidget(p)
    p.resize(1400, 900)
    p.show()
    yield p
    p.shutdown()
    ctx.jobs.shutdown()


def _open(qtbot, page: Page, path: Path) -> None:  # noqa: ANN001
    page.ctx.open_model(path)
    qtbot.waitUntil(lambda: page.plan is not None, timeout=10000)
    qtbot.waitUntil(lambda: not page.is_busy(), timeout=60000)
    qtbot.waitUntil(
        lambda: page.plan is not None and page.plan.rows[1].weights_exact, timeout=10000
    )


def test_open_plan_and_exact_figures(qtbot, page: Page, tiny_model: Path) -> None:  # noqa: ANN001
    _open(qtbot, page, tiny_model)
    assert page.card.values["arch"].text() == "llama"
    assert page.card.values["layers"].text() == "4"
    model = page.table.model_
    assert model.rowCount() == len(page.plan.rows) > 30
    assert model.index(0, 0).data() == "current file"
    # all rows' weights came from llama.cpp's dry run, KV/compute from its dry load
    assert all(r.weights_exact for r in page.plan.rows if r.type != "Q2_0")
    # the dry load's figures reach the plan a turn or two after its job ends (planned in a
    # thread first, then here): the job done is not yet the plan made (failed once of many
    # runs under a loaded full suite)
    qtbot.waitUntil(lambda: page.plan.rows[0].memory_exact, timeout=10000)
    assert "exact" in page.exact_label.text()
    assert page.banner.isVisible() and page.plan.recommended in page.banner.title.text()


def test_controls_replan(qtbot, page: Page, tiny_model: Path) -> None:  # noqa: ANN001
    _open(qtbot, page, tiny_model)
    assert page.controls.ctx_box.value() == 2048  # the tiny model's trained context
    page.controls.ctx_box.setValue(4096)
    page.replan()
    before = page.plan.rows[0].devices[-1].kv_bytes
    page.controls.ctx_box.setValue(16384)
    page.replan()  # what the zero-delay timer does; call it directly
    assert page.plan.settings.n_ctx == 16384
    assert page.plan.rows[0].devices[-1].kv_bytes == 4 * before  # 4096 -> 16384 cells
    page.controls.kv.setCurrentText("q8_0")
    qtbot.waitUntil(lambda: page.plan.settings.type_v == "q8_0", timeout=2000)
    assert "flash attention" in page.controls.fa_note.text()
    assert page.plan.rows[0].devices[-1].kv_bytes < 4 * before


def test_context_changes_update_cells_in_place(
    qtbot,  # noqa: ANN001
    page: Page,
    tmp_path: Path,
) -> None:
    """A context change updates the fit table's cells in place: no model reset.

    Each step is the whole chain a user triggers: the spin box's signal, the zero-delay replan
    timer, the in-place table update and the repaint that follows. How long that takes is
    measured by bench/fit_responsiveness.py (BENCHMARKS.md), not here.
    """
    _open(qtbot, page, write_tiny_gemma3(tmp_path / "gemma-shaped.gguf"))
    model = page.table.model_
    kv_col = model.headers().index("KV")
    app = QApplication.instance()
    resets: list[str] = []
    model.modelReset.connect(lambda: resets.append("reset"))
    for i in range(10):
        n_ctx = 2048 * (i % 5 + 2)  # 4096 ... 12288, never the value before
        page.controls.ctx_box.setValue(n_ctx)
        for _ in range(100):  # the zero-delay timer fires on the first pass or so
            if page.plan.settings.n_ctx == n_ctx:
                break
            app.processEvents()
        app.processEvents()  # the repaint the update posted
        assert page.plan.settings.n_ctx == n_ctx
        kv_bytes = sum(d.kv_bytes for d in page.plan.rows[0].devices)
        assert model.index(0, kv_col).data() == _gib(kv_bytes)  # the cell follows the plan
    assert resets == []  # cells are updated in place, the rows and selection stay


def test_what_if_gpus(qtbot, page: Page, tiny_model: Path) -> None:  # noqa: ANN001
    _open(qtbot, page, tiny_model)
    page.controls.what_if.setText("2x24GiB")
    qtbot.waitUntil(lambda: len(page.plan.devices) == 3, timeout=2000)
    headers = page.table.model_.headers()
    assert "CUDA0" in headers and "CUDA1" in headers
    rec = page.plan.row(page.plan.recommended)
    assert rec.verdict == "fits"
    assert "GPU" in page.banner.title.text()
    page.controls.what_if.setText("nonsense")
    assert page.controls.what_if_error.isVisible()
    page.controls.what_if.setText("")
    qtbot.waitUntil(lambda: len(page.plan.devices) == 1, timeout=2000)


def test_moe_partial_offload_banner(qtbot, page: Page, tmp_path: Path) -> None:  # noqa: ANN001
    path = write_tiny_qwen3moe(tmp_path / "moe.gguf")
    _open(qtbot, page, path)
    page.controls.margin.setValue(0)
    page.controls.what_if.setText("1x620MiB")  # the CUDA overhead alone is 613 MiB
    qtbot.waitUntil(lambda: len(page.plan.devices) == 2, timeout=2000)
    assert any(r.verdict in ("partial", "no") for r in page.plan.rows)
    assert page.card.values["experts"].text().startswith("2 of 8")


def test_bad_file_shows_message(qtbot, page: Page, tmp_path: Path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 16)
    page.ctx.open_model(bad)
    qtbot.waitUntil(lambda: page.banner.isVisible() and page.banner.level == "error", timeout=5000)
    assert "cannot be planned" in page.banner.title.text()
    assert not page.quantize_button.isEnabled()


def test_quantize_selected_navigates(qtbot, page: Page, tiny_model: Path) -> None:  # noqa: ANN001
    _open(qtbot, page, tiny_model)
    with qtbot.waitSignal(page.ctx.navigate, timeout=2000) as sig:
        page.quantize_selected()
    assert sig.args == ["quantize"]


def test_user_recipes_and_measured_types_in_the_table(  # noqa: ANN001
    qtbot, page: Page, tiny_model: Path
) -> None:
    from qtapp.core.fit.quants import Recipe, Rule
    from qtapp.core.fit.recipes_store import save_user_recipe
    from qtapp.core.results.store import ResultsStore

    save_user_recipe(Recipe("my-q4", "Q4_K_M", (Rule("ffn_down", "Q8_0"),), builtin=False))
    with ResultsStore.open() as store:
        for name, kld in (("Q8_0", 0.02), ("Q6_K", 0.01)):
            path = tiny_model.parent / f"tiny-llama-{name}.gguf"
            run = store.begin_run("eval", path, path.name, settings={"base": str(tiny_model)})
            store.finish_run(run, "finished", metrics={"kld_mean": kld, "ppl": 9.0})
    _open(qtbot, page, tiny_model)
    model = page.table.model_
    texts = [model.index(i, 0).data() for i in range(model.rowCount())]
    assert "my-q4" in texts and model.index(texts.index("my-q4"), 0).data(6).italic()  # FontRole
    assert any(t.endswith("Q6_K ◆") for t in texts) and "◆ ranked by" in page.caption.text()
    assert "your recipes" in page.caption.text()
    # measured Q6_K now ranks above Q8_0; the user's recipe sits just above its base type
    assert texts.index(next(t for t in texts if "Q6_K " in t)) < texts.index("Q8_0 ◆")
    assert texts.index("Q4_K_XL") < texts.index("my-q4") < texts.index("Q4_K_M")
    mine = page.plan.row("my-q4")
    assert (
        mine is not None
        and mine.weights_exact
        and mine.weights_bytes > (page.plan.row("Q4_K_M").weights_bytes)
    )
    tip = model.tooltip(texts.index("Q8_0 ◆"), 0)
    assert "mean KLD 0.02" in tip


def test_measured_speeds_shown_and_calibrating_the_rest(  # noqa: ANN001
    qtbot, page: Page, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from qtapp.core.fit import sources
    from qtapp.core.fit.measured_speed import hardware_record, speed_text, usable_cores
    from qtapp.core.results.store import ResultsStore

    with ResultsStore.open() as store:
        path = tiny_model.parent / "tiny-llama-Q8_0.gguf"
        hw = hardware_record(SimpleNamespace(gpus=()))
        run = store.begin_run(
            "eval", path, path.name, hardware=hw, settings={"base": str(tiny_model)}
        )
        metrics = {"tg_tps": 47.0, "tg_tps_sd": 0.5, "pp_tps": 700.0, "pp_tps_sd": 8.0}
        metrics.update(n_gpu_layers=0, threads=usable_cores(), ppl=9.0)
        store.finish_run(run, "finished", metrics=metrics)
    reads = []
    real = sources.measured_speeds
    monkeypatch.setattr(sources, "measured_speeds", lambda *a: reads.append(1) or real(*a))
    _open(qtbot, page, tiny_model)
    model = page.table.model_
    headers = model.headers()
    pp_col, tg_col = headers.index("pp t/s"), headers.index("tg t/s")
    types = [model.index(i, 0).data(256) for i in range(model.rowCount())]  # UserRole
    q8, q4 = types.index("Q8_0"), types.index("Q4_K_M")
    # shown at the chosen context: the depth-0 measurement scaled by the predicted depth cost
    q8_row = page.plan.row("Q8_0")
    assert q8_row is not None and q8_row.speed_source == "measured"
    depth_scale = q8_row.predicted_at_depth("tg") / q8_row.predicted_tg_tps
    assert q8_row.tg_tps == pytest.approx(47.0 * depth_scale)
    assert model.index(q8, tg_col).data() == speed_text(q8_row, "tg")
    assert model.index(q8, pp_col).data() == speed_text(q8_row, "pp")
    tip = model.tooltip(q8, tg_col)
    assert "measured on " in tip and "47.0 ± 0.5" in tip and "scaled to depth" in tip
    assert model.index(q4, tg_col).data().startswith("~")
    assert "calibrated from 1 measurement" in model.tooltip(q4, pp_col)
    assert "calibrated from 1 measurement on the CPU" in page.caption.text()
    q4_row = page.plan.row("Q4_K_M")
    assert q4_row is not None and q4_row.tg_tps != q4_row.predicted_tg_tps
    # replanning (a slider move) does not read the store again
    page.controls.ctx_box.setValue(1024)
    page.replan()
    assert len(reads) == 1
    # on what-if GPUs the CPU measurements say nothing: predicted, marked *
    page.controls.what_if.setText("1x24GiB")
    qtbot.waitUntil(lambda: len(page.plan.devices) == 2, timeout=2000)
    tg_col = model.headers().index("tg t/s")
    assert model.index(q4, tg_col).data().endswith("*")
    assert "Speeds are predicted" in page.caption.text()


def test_load_mode_changes_the_host_side(qtbot, page: Page, tiny_model: Path) -> None:  # noqa: ANN001
    _open(qtbot, page, tiny_model)
    cpu = page.plan.rows[0].devices[-1]
    assert page.plan.load.mode == "mmap" and cpu.mapped_bytes > 0
    page.controls.load_mode.setCurrentIndex(page.controls.load_mode.findData("none"))
    qtbot.waitUntil(lambda: page.plan.load.mode == "none", timeout=2000)
    # read into RAM: nothing stays mapped, the weights are a private copy
    assert page.plan.rows[0].devices[-1].mapped_bytes == 0


def test_pointing_at_a_cell_shows_its_tooltip(qtbot, page: Page, tiny_model: Path) -> None:  # noqa: ANN001
    """Tooltips are made when asked: the view asks the model for the cell under the pointer."""
    from PySide6.QtCore import QEvent, QPoint
    from PySide6.QtGui import QHelpEvent
    from PySide6.QtWidgets import QApplication, QToolTip

    _open(qtbot, page, tiny_model)
    page.resize(1400, 900)
    page.show()
    qtbot.waitExposed(page)
    table = page.table
    device_col = 3  # the first device column: the memory breakdown
    rect = table.visualRect(table.model_.index(1, device_col))
    pos = rect.center()
    event = QHelpEvent(QEvent.Type.ToolTip, pos, table.viewport().mapToGlobal(pos))
    QApplication.sendEvent(table.viewport(), event)
    expected = table.model_.tooltip(1, device_col)
    assert expected and "weights" in expected and "KV cache" in expected
    qtbot.waitUntil(lambda: QToolTip.isVisible() and QToolTip.text() == expected, timeout=5000)
    # outside every cell: no tooltip left showing
    outside = QPoint(2, table.viewport().height() - 2)
    if not table.indexAt(outside).isValid():
        event = QHelpEvent(QEvent.Type.ToolTip, outside, table.viewport().mapToGlobal(outside))
        QApplication.sendEvent(table.viewport(), event)
        qtbot.waitUntil(lambda: not QToolTip.isVisible(), timeout=5000)
