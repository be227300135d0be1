"""The offload sweep on the Evaluate page: disabled with its reason without a GPU; with the
replayed H200 and a fake speed source, a measured curve beside the prediction, stored so the
Fit page's partial-offload rows use it. (No figure here is a GPU measurement.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from qtapp.ui.common.context import AppContext

REPLAY = Path(__file__).resolve().parents[1] / "fixtures" / "nvml" / "h200-idle.json"


@pytest.fixture()
def page(qtbot):
    from qtapp.ui.evaluate.page import Page

    ctx = AppContext()
    p = Page(ctx)
    qtbot.addWidget(p)
    p.resize(1280, 860)
    yield p
    p.shutdown()
    ctx.jobs.shutdown()


def test_without_a_gpu_the_sweep_is_disabled_and_says_why(page) -> None:
    from types import SimpleNamespace

    page.ctx.set_hardware(SimpleNamespace(gpus=[]))
    panel = page.offload
    assert not panel.button.isEnabled() and not panel.values.isEnabled()
    assert "No NVIDIA GPU was found" in panel.reason.text() and not panel.reason.isHidden()
    assert "No NVIDIA GPU" in panel.button.toolTip()


@pytest.mark.timeout(120)
def test_replayed_gpu_fake_source_curve_prediction_and_fit_rows(
    page, qtbot, tiny_model: Path, monkeypatch
) -> None:
    from qtapp.core.fit.devices import devices_from_report, host_device
    from qtapp.core.fit.kv_model import ContextSettings
    from qtapp.core.fit.measured_speed import measured_speeds
    from qtapp.core.fit.plan import PlanInputs, make_plan
    from qtapp.core.gguf.model import read_model
    from qtapp.core.hardware.probe import probe_hardware
    from qtapp.core.results.store import ResultsStore

    monkeypatch.setenv("QUANTLENS_NVML_REPLAY", str(REPLAY))
    report = probe_hardware()
    page.ctx.set_hardware(report)
    panel = page.offload
    assert panel.button.isEnabled() and panel.reason.isHidden()
    quant = tiny_model.parent / "tiny-llama-Q8_0.gguf"
    quant.write_bytes(tiny_model.read_bytes())  # same header: counts as this model's Q8_0
    page.controls.set_models([quant])
    panel.job_kind = "fake_speed_sweep"  # a stand-in speed source: no GPU measures here
    panel.values.setText("0,2,4")
    with qtbot.waitSignal(panel.finished, timeout=60_000):
        panel.button.click()
    key = next(k for k in panel.plot.runs() if not k.endswith("#predicted"))
    xs, ys, errs = panel.plot.data(key)
    assert list(xs) == [0, 2, 4] and ys[2] > ys[1] > ys[0] and (errs > 0).all()
    qtbot.waitUntil(lambda: panel.plot.has_run(f"{key}#predicted"), timeout=30_000)
    px, py, _e = panel.plot.data(f"{key}#predicted")
    assert list(px) == [0, 2, 4] and (py > 0).all()
    panel.recorder.wait()
    run = ResultsStore.open().list_runs(kind="eval")[0]
    assert run.metrics["offload_axis"] == "ngl" and "offload_curve" in run.metrics
    # the Fit planner's row at 2 GPU layers on the same (replayed) GPU shows the measurement
    m = read_model(tiny_model)
    speeds = measured_speeds(m)
    assert {s.placement for s in speeds.measurements} >= {"ngl2", "ngl4"}
    gpus = devices_from_report(report)
    inp = PlanInputs(m, ContextSettings(n_ctx=256), gpus, host_device(report), ngl=2)
    inp.speeds = speeds
    row = make_plan(inp, ["Q8_0"]).row("Q8_0")
    assert row is not None and row.n_gpu_layers == 2 and row.speed_source == "measured"
    assert row.measured is not None and row.measured.tg_tps == pytest.approx(ys[1])
