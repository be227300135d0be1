"""The Evaluate page with real jobs on the tiny model: live curves, table, export, cancel."""

from __future__ import annotations

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
    p.controls.ctx.setValue(256)
    p.controls.reps.setValue(2)
    p.controls.threads.setValue(2)
    yield p
    p.shutdown()
    ctx.jobs.shutdown()


def test_live_curves_table_and_export(page, qtbot, tiny_model: Path, tmp_path: Path) -> None:
    qtbot.waitExposed(page)
    with qtbot.waitSignal(page.all_done, timeout=90_000):
        page.queue([tiny_model], tiny_model, chunks=3, speed=True)
    key = page.ppl_plot.runs()[0]
    xs, ys, errs = page.ppl_plot.data(key)
    assert list(xs) == [127, 254, 381] and (errs > 0).all()
    assert len(page.kld_plot.data(key)[0]) == 3
    # speed at depth 0 only (the default): one point per chart, its band the sd of 2 runs
    assert len(page.pp_plot.data(key)[1]) == 1 and len(page.tg_plot.data(key)[1]) == 1
    assert page.table.item(0, 1).text() == "finished"
    assert "±" in page.table.item(0, 2).text()
    assert page.table.item(0, 6).text().startswith("100.00")
    text = page.ppl_plot.show_values_at(250)
    assert tiny_model.stem in text and "x = 254" in text
    files = page.export(tmp_path, "png") + page.export(tmp_path, "svg")
    assert all(f.stat().st_size > 1000 for f in files)
    assert "<svg" in files[-1].read_text()[:2000]
    results = pytest.importorskip("qtapp.core.results.store")
    page.wait_stored()
    runs = results.ResultsStore.open().list_runs(kind="eval")
    assert runs and runs[0].state == "finished"
    assert len(results.ResultsStore.open().curves(runs[0].id)["ppl"]) == 3


def test_cancel_keeps_points_marked_partial(page, qtbot, tiny_model: Path) -> None:
    page.controls.threads.setValue(1)
    page.queue([tiny_model], None, chunks=0, speed=False)
    assert page.running()  # its job comes in the next turn (each model in a turn of its own)
    qtbot.waitUntil(lambda: bool(page.ppl_plot.runs()), timeout=5_000)
    key = page.ppl_plot.runs()[0]
    qtbot.waitUntil(lambda: len(page.ppl_plot.data(key)[0]) >= 1, timeout=30_000)
    with qtbot.waitSignal(page.all_done, timeout=30_000):
        page.cancel()
    assert page.table.item(0, 1).text() == "partial"
    assert len(page.ppl_plot.data(key)[0]) >= 1
    assert page.controls.start_btn.isEnabled()


def test_start_without_models_says_what_to_do(page) -> None:
    page.controls.set_models([])
    page.start()
    assert "Add at least one model" in page.controls.status.text()


REPLAY = Path(__file__).resolve().parents[1] / "fixtures" / "nvml" / "h200-idle.json"


def _stored_metrics() -> dict:
    results = pytest.importorskip("qtapp.core.results.store")
    runs = results.ResultsStore.open().list_runs(kind="eval")
    assert runs
    return runs[0].metrics


def test_memory_panel_replay_gpu_and_stored_peak(
    page, qtbot, tiny_model: Path, monkeypatch
) -> None:
    """NVML (replayed H200: 644,939,776 B in use, no other process) next to the plan; the peak
    lands in the stored metrics."""
    monkeypatch.setenv("QUANTLENS_NVML_REPLAY", str(REPLAY))
    page.memory.timer.setInterval(150)
    with qtbot.waitSignal(page.all_done, timeout=90_000):
        page.queue([tiny_model], None, chunks=3, speed=True)
        qtbot.waitUntil(lambda: page.memory.rows().get("CPU") is not None, timeout=30_000)
        qtbot.waitUntil(lambda: page.memory.rows()["CPU"].peak is not None, timeout=30_000)
        rows = page.memory.rows()
        assert set(rows) == {"CUDA0", "CPU"}
        assert rows["CUDA0"].now == 644_939_776 and rows["CUDA0"].label.endswith("NVIDIA H200")
        assert rows["CPU"].predicted and rows["CPU"].predicted > 0
        texts = [w.text() for w in page.memory._cells]
        assert "615 MiB" in texts and "Planned" in texts
        assert "replay" in page.memory.note.text()
    page.wait_stored()
    m = _stored_metrics()
    assert m["mem_peak_cuda0_bytes"] == 644_939_776
    assert m["mem_peak_host_rss_bytes"] > 10 * 1024**2  # a python worker with llama.cpp loaded
    assert "mem_pred_cuda0_bytes" in m and m["mem_pred_cpu_bytes"] > 0


def test_memory_panel_cpu_only_shows_worker_rss(page, qtbot, tiny_model: Path, monkeypatch) -> None:
    monkeypatch.delenv("QUANTLENS_NVML_REPLAY", raising=False)
    page.ctx.extras["eval_memory_probe"] = None
    from qtapp.core.hardware.probe import HardwareProbe

    def no_nvml():
        raise ImportError("no NVML here")

    page.memory.probe = HardwareProbe(loader=no_nvml)
    page.memory.timer.setInterval(150)
    with qtbot.waitSignal(page.all_done, timeout=90_000):
        page.queue([tiny_model], None, chunks=3, speed=True)
        qtbot.waitUntil(lambda: page.memory.rows().get("CPU") is not None, timeout=30_000)
        qtbot.waitUntil(lambda: page.memory.rows()["CPU"].peak is not None, timeout=30_000)
        rows = page.memory.rows()
        assert list(rows) == ["CPU"] and rows["CPU"].label == "host RAM (worker RSS)"
        assert "host RAM only" in page.memory.note.text()
    page.wait_stored()
    m = _stored_metrics()
    assert m["mem_peak_host_rss_bytes"] > 10 * 1024**2
    assert m["mem_pred_cpu_bytes"] > 0 and not any("cuda" in k for k in m)


def test_task_accuracy_curve_with_its_interval(page, qtbot, tiny_model: Path, tmp_path: Path):
    """A HellaSwag file scores each model after its evaluation: a live accuracy curve with its
    95% Wilson interval as the band, stored as a tasks run."""
    from tests.core.test_tasks import _write_tasks

    page.controls.task_file.set_text(str(_write_tasks(tmp_path / "hs.txt", 6)))
    page.controls.task_limit.setValue(4)
    page.queue([tiny_model], None, chunks=1, speed=False)
    qtbot.waitUntil(lambda: page.acc_plot.runs() != [], timeout=30_000)
    key = page.acc_plot.runs()[0]
    qtbot.waitUntil(lambda: len(page.acc_plot.data(key)[0]) == 4, timeout=60_000)
    run = page.acc_plot._runs[key]
    assert run.xs == [1, 2, 3, 4]
    assert all(lo <= y <= hi for lo, y, hi in zip(run.los, run.ys, run.his, strict=True))
    assert run.his[-1] - run.los[-1] > 10  # four tasks: a wide interval
    results = pytest.importorskip("qtapp.core.results.store")

    def stored() -> bool:
        runs = results.ResultsStore.open().list_runs(kind="tasks")
        return bool(runs) and runs[0].state == "finished"

    qtbot.waitUntil(stored, timeout=30_000)


def test_standard_task_set_only_with_downloads_allowed(
    page,
    qtbot,
    tmp_path: Path,
    http_server,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qtapp.core.app.settings import Settings
    from qtapp.core.evaluate.task_sets import STANDARD_SETS, TaskSet

    endpoint, hits = http_server
    monkeypatch.setitem(STANDARD_SETS, "hellaswag", TaskSet(
        "hellaswag", "hellaswag", "HellaSwag", "hellaswag_val_full.txt",
        url=f"{endpoint}/hellaswag_val_full.txt",
    ))  # fmt: skip
    controls = page.controls
    controls.fetch_task_set("hellaswag")  # the setting is off by default
    assert "Downloads are off" in controls.status.text() and hits == []
    settings = Settings.load()
    settings.network_allowed = True
    settings.save()
    controls.fetch_task_set("hellaswag")
    qtbot.waitUntil(lambda: controls.task_kind == "hellaswag", timeout=30_000)
    assert controls.task_file.text().endswith("hellaswag_val_full.txt") and len(hits) == 1
    qtbot.waitUntil(lambda: controls.get_tasks.isEnabled(), timeout=5_000)
