"""Every evaluation stores the plan and the measurement; the plan shows how far past plans were
off (the CLI here; the Fit page reads the same ``PlanSources.checks``)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from qtapp.core.evaluate.memory import plan_for_run
from qtapp.core.evaluate.runs import eval_params
from qtapp.core.fit.plan_checks import PlanCheck, plan_checks_from_runs, plan_checks_text
from qtapp.core.gguf.model import read_model
from qtapp.core.results.store import ResultsStore

pytestmark = pytest.mark.timeout(300)
MIB = 1024 * 1024


def _run(model: object, metrics: dict[str, object], state: str = "finished") -> SimpleNamespace:
    return SimpleNamespace(
        kind="eval",
        state=state,
        model_fingerprint=getattr(model, "fingerprint", None),
        model_name="",
        settings={},
        metrics=metrics,
    )


def test_checks_pair_the_plan_with_the_measurement_per_device(tiny_model: Path) -> None:
    m = read_model(tiny_model)
    runs = [
        _run(m, {"mem_pred_cpu_bytes": 100 * MIB, "worker_rss_base_bytes": 50 * MIB,
                 "worker_rss_model_bytes": 140 * MIB}),  # 90 of 100 used
        _run(m, {"mem_pred_cpu_bytes": 100 * MIB, "worker_rss_base_bytes": 50 * MIB,
                 "worker_rss_model_bytes": 160 * MIB, "mem_pred_cuda0_bytes": 2048 * MIB,
                 "mem_peak_cuda0_bytes": 1024 * MIB}),  # 110 of 100: a short plan
        _run(m, {"mem_pred_cpu_bytes": 100 * MIB}),  # no measurement: left out
        _run(m, {"mem_pred_cpu_bytes": 1, "worker_rss_base_bytes": 1,
                 "worker_rss_model_bytes": 9}, state="failed"),
    ]  # fmt: skip
    checks = plan_checks_from_runs(runs, m)
    assert [c.device for c in checks] == ["CUDA0", "CPU"]
    cuda, cpu = checks
    assert cpu.pairs == [(100 * MIB, 90 * MIB), (100 * MIB, 110 * MIB)]
    assert cpu.worst_short == pytest.approx(0.10) and cpu.mean_off == pytest.approx(0.0)
    assert cuda.pairs == [(2048 * MIB, 1024 * MIB)] and cuda.worst_short == 0
    text = plan_checks_text(checks)
    assert "host RAM: 2 evaluations" in text and "10% more than planned" in text
    assert "CUDA0: 1 evaluation" in text and "no run used more than planned" in text
    assert plan_checks_text([]) == "" and PlanCheck("CPU").mean_off == 0


def test_a_cli_evaluation_stores_both_and_the_plan_shows_them(
    tiny_model: Path, quantlens_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qtapp.__main__ import main

    assert main(["eval", str(tiny_model), "--ctx", "128", "--chunks", "2", "--json"]) == 0
    with ResultsStore.open() as store:
        (run,) = store.list_runs(kind="eval")
    m = run.metrics
    params = eval_params(tiny_model, ctx=128, chunks=2)
    assert m["mem_pred_cpu_bytes"] == plan_for_run(tiny_model, params, None)[0]["CPU"]
    assert m["worker_rss_model_bytes"] > m["worker_rss_base_bytes"] > 10 * MIB
    capsys.readouterr()
    assert main(["plan", str(tiny_model), "--gpus", "1x8GiB", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (check,) = data["plan_checks"]
    assert check["device"] == "CPU"
    ((planned, measured),) = check["planned_and_measured_bytes"]
    assert planned == m["mem_pred_cpu_bytes"]
    assert measured == m["worker_rss_model_bytes"] - m["worker_rss_base_bytes"]
    assert main(["plan", str(tiny_model), "--gpus", "1x8GiB"]) == 0
    assert "Your own runs checked the plan: host RAM: 1 evaluation" in capsys.readouterr().out
