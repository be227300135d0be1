"""Tailor in the window (issue 13, criterion 4): the Fit page's action to a tailored row, the
Quantize page's budget dialog (cancel, a budget below the smallest mix, a quantized source),
and the tailored run as its own point on the Compare page's quality chart.

Real tiny GGUF models and real llama.cpp; the scan is kept tiny (1 band, 2 types, 64 tokens).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qtapp.core.app.paths import app_paths
from qtapp.core.fit.recipes_store import load_user_recipes
from qtapp.core.tailor.recipe import is_tailored
from qtapp.core.tailor.scan import ScanSettings
from qtapp.ui.common.context import AppContext
from qtapp.ui.common.tailor_panel import TailorDialog

pytestmark = pytest.mark.timeout(120)

SMALL = ScanSettings(candidates=("Q4_K", "Q6_K"), bands=1, ctx=64, chunks=1, batch=64)


def _work_is_empty() -> bool:
    work = app_paths().cache / "tailor" / "work"
    return not work.exists() or not any(work.iterdir())


def _scan_caches() -> list[Path]:
    return list((app_paths().cache / "tailor").glob("*-scan-*.json"))


@pytest.fixture
def fit_page(qtbot, quantlens_home: Path):  # noqa: ANN001, ANN201 - pytest-qt fixture
    from qtapp.ui.fit.page import Page

    ctx = AppContext()
    p = Page(ctx)
    p.tailor_settings = SMALL
    qtbot.addWidget(p)
    p.resize(1400, 900)
    p.show()
    yield p
    p.shutdown()
    ctx.jobs.shutdown()


def test_fit_page_tailors_to_the_what_if_gpu_and_shows_the_recipe_as_a_row(
    qtbot,  # noqa: ANN001
    fit_page,  # noqa: ANN001
    tiny_model: Path,
) -> None:
    page = fit_page
    page.ctx.open_model(tiny_model)
    qtbot.waitUntil(lambda: page.plan is not None, timeout=15000)
    page.controls.what_if.setText("1x8GiB")
    page.controls.ctx_box.setValue(1024)
    qtbot.waitUntil(lambda: page.plan.settings.n_ctx == 1024 and page.tailor_button.isEnabled())
    dialog = page.open_tailor()
    assert dialog is not None
    # the cost is shown before anything starts, and the budget names the GPU and context
    qtbot.waitUntil(lambda: dialog.state == "ready", timeout=15000)
    assert "Scan cost" in dialog.cost.text() and "min" in dialog.cost.text()
    assert "1,024 tokens" in dialog.target.text() and "8.0 GiB" in dialog.target.text()
    assert dialog.start_button.isEnabled()
    with qtbot.waitSignal(dialog.saved, timeout=90000) as saved:
        dialog.start_button.click()
    name = saved.args[0]
    assert is_tailored(name) and name.startswith("tiny-llama-tailored-")
    assert name in load_user_recipes()
    assert _work_is_empty() and len(_scan_caches()) == 1
    t = dialog.result
    assert t is not None and t.row is not None and t.row.verdict == "fits"
    assert f"{t.bytes:,} bytes" in dialog.message.text()
    assert f"{t.solution.predicted_kld:.4f}" in dialog.message.text()
    assert dialog.fit_button.isVisible() and not dialog.start_button.isVisible()
    # the page re-reads its recipes and shows the new one as a row with the exact weights,
    # without resetting the context the user chose
    qtbot.waitUntil(
        lambda: page.plan is not None and page.plan.row(name) is not None, timeout=20000
    )
    row = page.plan.row(name)
    assert row.user_recipe and row.weights_exact and row.weights_bytes == t.bytes
    assert page.plan.settings.n_ctx == 1024
    dialog.fit_button.click()
    assert page.table.current_type() == name
    page.replan()  # exact figures arriving later replan: the user's row stays selected
    assert page.table.current_type() == name
    # a second tailoring reuses the cached scan: no cost, straight to the solve
    again = page.open_tailor()
    assert again is not None and again is not dialog
    qtbot.waitUntil(lambda: again.state == "ready", timeout=15000)
    assert "cached" in again.cost.text()
    # "Edit recipe" opens the recipe editor on the tailored rules
    from qtapp.ui.quantize.recipe_editor import RecipeEditorDialog

    with qtbot.waitSignal(again.saved, timeout=60000):
        again.start_button.click()
    again.edit_button.click()
    [editor] = [d for d in page.findChildren(RecipeEditorDialog) if d.isVisible()]
    assert editor.editor.name.text() == name
    assert editor.editor.rules() == list(t.recipe.rules)
    editor.close()


@pytest.fixture
def quantize_page(qtbot, quantlens_home: Path):  # noqa: ANN001, ANN201 - pytest-qt fixture
    from qtapp.ui.quantize.page import Page

    ctx = AppContext()
    p = Page(ctx)
    p.tailor_settings = SMALL
    qtbot.addWidget(p)
    yield p
    p.shutdown()
    ctx.jobs.shutdown()


def test_quantize_page_cancel_leaves_nothing_and_too_small_a_budget_names_the_smallest(
    qtbot,  # noqa: ANN001
    quantize_page,  # noqa: ANN001
    tiny_model: Path,
) -> None:
    page = quantize_page
    page.set_source(tiny_model)
    dialog = page.open_tailor()
    assert isinstance(dialog, TailorDialog) and dialog.inputs is None
    qtbot.waitUntil(lambda: dialog.state == "ready", timeout=15000)
    assert 1.0 < dialog.budget_box.value() < 2.0  # MiB: ~5 bits per weight of the 5 MB source
    dialog.budget_box.setValue(0.1)  # MiB: below any mix of a 5 MB model
    progress: list[object] = []
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.runner is not None, timeout=15000)
    dialog.runner.event.connect(progress.append)
    qtbot.waitUntil(lambda: bool(progress), timeout=30000)
    assert "%" in dialog.bar.format() or dialog.bar.format()
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: dialog.state == "cancelled", timeout=30000)
    assert "no file was left behind" in dialog.bar.format()
    assert _work_is_empty() and not _scan_caches() and not load_user_recipes()
    # again, to the end: the budget is too small, and the message says what would fit
    assert dialog.start_button.isEnabled()
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.state == "failed", timeout=90000)
    text = dialog.message.text()
    assert "below the smallest possible mix" in text and "MiB" in text
    assert not load_user_recipes() and _work_is_empty() and len(_scan_caches()) == 1


def test_quantized_source_needs_the_requantize_choice(
    qtbot,  # noqa: ANN001
    quantlens_home: Path,
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    from qtapp.core.jobs.events import Finished
    from qtapp.core.quantize.jobs import QuantizeOptions, quantize_spec, run_quantize

    spec = quantize_spec(tiny_model, "Q8_0", QuantizeOptions(out_dir=str(tmp_path)))
    terminal = run_quantize(spec)
    assert isinstance(terminal, Finished)
    dialog = TailorDialog(terminal.result["path"], budget=2**20, settings=SMALL)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.state == "refused", timeout=15000)
    assert "already quantized" in dialog.message.text()
    assert dialog.requantize.isVisible() and not dialog.start_button.isEnabled()
    dialog.requantize.setChecked(True)
    assert dialog.start_button.isEnabled()


def test_tailored_run_is_its_own_star_on_the_quality_chart(qtbot) -> None:  # noqa: ANN001
    from qtapp.core.results.comparison import CompareRow
    from qtapp.ui.compare.charts import QualityChart

    def row(i: int, label: str, gib: float, kld: float) -> CompareRow:
        return CompareRow(
            i, "quant", "done", "tiny", "fp", label, gib, None, None, None, None, None,
            None, kld, None, None, None, None, "", None, False, "", "", 0.0,
        )  # fmt: skip

    chart = QualityChart()
    qtbot.addWidget(chart)
    rows = [
        row(1, "Q4_K_M", 0.30, 0.05),
        row(2, "Q6_K", 0.40, 0.01),
        row(3, "tiny-tailored-350MiB", 0.34, 0.02),
    ]
    chart.update_rows(rows, "kld", None)
    items = chart.plotItem.listDataItems()
    by_name = {i.name(): i for i in items if i.name()}
    assert set(by_name) == {"tiny", "tiny tailored"}
    star = by_name["tiny tailored"]
    assert star.opts["symbol"] == "star" and list(star.getData()[0]) == [0.34]
    assert by_name["tiny"].opts["symbol"] == "o" and len(by_name["tiny"].getData()[0]) == 2


def test_an_evaluated_tailored_file_is_labelled_by_its_recipe(quantlens_home: Path) -> None:
    """What the Compare page calls the quant of a tailored recipe: the recipe's own name (which
    the chart recognises), not the header's file type."""
    from qtapp.core.evaluate.runs import quant_label
    from qtapp.core.fit.quants import Recipe, Rule
    from qtapp.core.fit.recipes_store import save_user_recipe

    name = "tiny-llama-tailored-3MiB"
    save_user_recipe(Recipe(name, "Q8_0", (Rule("ffn_down", "Q4_K", ""),), "", builtin=False))
    label = quant_label(Path(f"/nowhere/tiny-llama-F16-{name}.gguf"))
    assert label == name and is_tailored(label)


def test_in_the_window_quantize_page_tailors_then_shows_it_in_fit_and_queues_it(
    qtbot,  # noqa: ANN001
    quantlens_home: Path,
    tiny_model: Path,
    tmp_path: Path,
) -> None:
    from qtapp.ui.main_window import MainWindow

    win = MainWindow()
    qtbot.addWidget(win)
    quantize = win.pages["quantize"]
    quantize.tailor_settings = SMALL
    quantize.confirm_overwrite = lambda _paths: True
    quantize.options.out_dir.edit.setText(str(tmp_path))
    quantize.set_source(tiny_model)
    dialog = quantize.open_tailor()
    qtbot.waitUntil(lambda: dialog.state == "ready", timeout=15000)
    dialog.budget_box.setValue(3.0)
    with qtbot.waitSignal(dialog.saved, timeout=90000) as saved:
        dialog.start_button.click()
    name = saved.args[0]
    assert name == "tiny-llama-tailored-3MiB" and dialog.result.bytes <= 3 * 2**20
    dialog.fit_button.click()  # the Fit page opens the model and selects the new row
    fit = win.pages["fit"]
    qtbot.waitUntil(lambda: fit.table.current_type() == name, timeout=30000)
    assert win.current_page_key() == "fit"
    assert fit.plan.row(name).weights_bytes == dialog.result.bytes
    # "Quantize it" from a second dialog (the scan is cached now) queues the recipe
    again = quantize.open_tailor()
    qtbot.waitUntil(lambda: again.state == "ready", timeout=15000)
    assert "cached" in again.cost.text()
    again.budget_box.setValue(3.0)
    with qtbot.waitSignal(again.saved, timeout=60000):
        again.start_button.click()
    again.quantize_button.click()
    qtbot.waitUntil(lambda: len(quantize.rows) == 1, timeout=10000)
    assert win.current_page_key() == "quantize"
    qtbot.waitUntil(lambda: quantize.rows[0].done, timeout=60000)
    row = quantize.rows[0]
    assert row.target == name and row.state == "finished", (row.state, row.message)
    assert Path(row.out_path).is_file() and name in Path(row.out_path).name
    win.close()
