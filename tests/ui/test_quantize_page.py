"""The Quantize page: two queued jobs, live progress, cancel mid-write off the GUI thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from qtapp.core.quantize.imatrix import random_imatrix_for, write_imatrix_gguf
from qtapp.ui.common.context import AppContext
from qtapp.ui.quantize.page import Page


@pytest.fixture
def page(qtbot, tmp_path: Path):
    ctx = AppContext()
    widget = Page(ctx)
    qtbot.addWidget(widget)
    widget.resize(1200, 800)
    widget.show()
    widget.options.out_dir.set_text(str(tmp_path / "out"))
    yield widget
    widget.shutdown()
    ctx.jobs.shutdown()


def test_queue_two_jobs_cancel_the_first_mid_write(
    qtbot, page: Page, tiny_model: Path, tmp_path: Path
) -> None:
    values = random_imatrix_for(tiny_model)
    imatrix = write_imatrix_gguf(tmp_path / "m.imatrix", values, {k: [1] for k in values})
    page.options.imatrix.set_text(str(imatrix))
    results: list[int] = []
    page.ctx.results_changed.connect(lambda: results.append(1))
    outputs = page.queue(tiny_model, ["IQ2_XXS", "Q4_K_M"])
    assert [p.name for p in outputs] == ["tiny-llama-IQ2_XXS.gguf", "tiny-llama-Q4_K_M.gguf"]
    assert len(page.rows) == 1  # the first job's row at once, the next one in the next turn
    qtbot.waitUntil(lambda: len(page.rows) == 2, timeout=5000)
    first, second = page.rows
    assert second.state == "queued"
    # progress arrives: the first job is writing tensors
    qtbot.waitUntil(
        lambda: (
            first.state == "running"
            and first.bar.value() > 0
            and "/39)" in first.tensor_label.text()
        ),
        timeout=20000,
    )
    part = outputs[0].with_name(outputs[0].name + ".part")
    assert part.exists()
    job = page._runners[id(first)].job
    pid = job.pid
    gui_thread = threading.current_thread()
    kill_threads: list[threading.Thread] = []
    release_kill = threading.Event()
    real_cancel = job.cancel

    def held_cancel() -> None:  # the kill waits until the click has returned
        kill_threads.append(threading.current_thread())
        release_kill.wait(10)
        real_cancel()

    def child_gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    job.cancel = held_cancel  # type: ignore[method-assign]
    page.cancel_row(first)
    # the click returned while the kill was still held back: it runs off the GUI thread
    assert not child_gone()
    qtbot.waitUntil(lambda: bool(kill_threads), timeout=5000)
    assert kill_threads[0] is not gui_thread
    release_kill.set()
    qtbot.waitUntil(child_gone, timeout=10000)  # and the child is gone (reaped)
    qtbot.waitUntil(lambda: first.state == "cancelled", timeout=5000)
    assert not part.exists() and not outputs[0].exists()
    # the second job runs to the end
    qtbot.waitUntil(lambda: second.done, timeout=30000)
    assert second.state == "finished", second.message
    assert outputs[1].stat().st_size == second.result["bytes"]
    assert second.evaluate_button.isVisible()
    assert results, "results_changed was not emitted"
    assert sorted(p.name for p in outputs[1].parent.iterdir()) == ["tiny-llama-Q4_K_M.gguf"]
    with qtbot.waitSignal(page.ctx.navigate, timeout=1000) as nav:
        second.evaluate_button.click()
    assert nav.args == ["evaluate"]


def test_all_done_then_next_batch(qtbot, page: Page, tiny_model: Path) -> None:
    """The demo tour's pattern: queue a base, then more from it once it is done."""
    called: list[str] = []
    page.on_all_done(lambda: called.append("base"))
    with qtbot.waitSignal(page.all_done, timeout=30000):
        (base,) = page.queue(tiny_model, ["Q8_0"], requantize=True)
    assert called == ["base"] and base.exists()
    with qtbot.waitSignal(page.all_done, timeout=30000):
        outs = page.queue(base, ["Q4_0"], requantize=True)
    assert page.rows[-1].state == "finished", page.rows[-1].message
    assert outs[0].exists()
    assert called == ["base"]  # a callback runs once


def test_a_jobs_row_first_its_job_in_a_later_turn(qtbot, page: Page, tiny_model: Path) -> None:
    """A child competes for the CPU from its start: the window lays out the row first."""
    (out,) = page.queue(tiny_model, ["Q4_0"])
    (row,) = page.rows
    assert row.state == "queued" and page.ctx.jobs.current is None
    with qtbot.waitSignal(page.all_done, timeout=30000):
        pass
    assert row.state == "finished" and out.exists()


def test_cancel_before_the_job_is_submitted(qtbot, page: Page, tiny_model: Path) -> None:
    outputs = page.queue(tiny_model, ["Q4_0", "Q8_0"])
    first = page.rows[0]
    page.cancel_row(first)  # in the queue's own turn: its job is not submitted yet
    assert first.state == "cancelled"
    with qtbot.waitSignal(page.all_done, timeout=30000):
        pass
    assert [r.state for r in page.rows] == ["cancelled", "finished"]
    assert not outputs[0].exists() and outputs[1].exists()
    page.queue(tiny_model, ["Q4_0"])  # one job (its file not made), cancelled at once: all done
    with qtbot.waitSignal(page.all_done, timeout=10000):
        page.cancel_row(page.rows[-1])
    assert page.rows[-1].state == "cancelled"


def test_existing_output_is_kept_without_consent(qtbot, page: Page, tiny_model: Path) -> None:
    with qtbot.waitSignal(page.all_done, timeout=30000):
        (out,) = page.queue(tiny_model, ["Q4_0"])
    stamp = out.stat().st_mtime_ns
    asked: list[list[Path]] = []
    page.confirm_overwrite = lambda paths: asked.append(paths) or False
    page.queue(tiny_model, ["Q4_0"])
    assert asked == [[out]]
    assert page.rows[-1].bar.format() == "kept the existing file"
    assert out.stat().st_mtime_ns == stamp


def test_refused_job_shows_the_reason(qtbot, page: Page, tiny_model: Path) -> None:
    with qtbot.waitSignal(page.all_done, timeout=30000):
        page.queue(tiny_model, ["IQ1_S"])
    row = page.rows[-1]
    assert row.state == "failed"
    assert "importance matrix" in row.tensor_label.text()


def test_queue_from_fit_waits_for_requantize_consent(
    qtbot, page: Page, tiny_model: Path, tmp_path: Path
) -> None:
    with qtbot.waitSignal(page.all_done, timeout=30000):
        (q8,) = page.queue(tiny_model, ["Q8_0"])
    assert page.queue_from_fit(q8, ["Q4_K_M"]) == []
    assert page.picker.checked() == ["Q4_K_M"]
    assert page.options.requantize_warning.isVisibleTo(page)
    page.options.requantize.setChecked(True)
    with qtbot.waitSignal(page.all_done, timeout=30000):
        outs = page.queue_from_fit(q8, ["Q4_K_M"])
    assert page.rows[-1].state == "finished", page.rows[-1].message
    assert outs[0].exists()


def test_recipe_editor_live_size_and_save(qtbot, tiny_model: Path) -> None:
    from qtapp.core.fit.recipes_store import load_user_recipes
    from qtapp.ui.quantize.recipe_editor import RecipeEditor

    editor = RecipeEditor(AppContext(), str(tiny_model))
    qtbot.addWidget(editor)
    with qtbot.waitSignal(editor.size_ready, timeout=20000) as first:
        pass
    base_bytes = first.args[0]["bytes"]
    assert editor.table.item(0, 3).text() == "1"  # ^output\.weight$ catches one tensor
    with qtbot.waitSignal(editor.size_ready, timeout=20000) as second:
        editor.add_rule(r"ffn_up", "Q8_0", "more bits")
    assert second.args[0]["bytes"] > base_bytes
    editor.name.setText("Q4_K_XL")
    assert not editor.save()  # a built-in name is refused
    editor.name.setText("my-mix")
    assert editor.save()
    assert "my-mix" in load_user_recipes()
    editor.shutdown()
