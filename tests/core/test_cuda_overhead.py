"""The CUDA overhead the user's own evaluations measured replaces the built-in figure."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from qtapp.core.fit.cuda_overhead import overheads_from_runs
from qtapp.core.fit.devices import (
    CUDA_OVERHEAD_F16,
    CUDA_OVERHEAD_QUANT,
    MIB,
    devices_from_report,
    overhead_text,
)
from qtapp.core.hardware.nvml_replay import ReplayNvml, load_snapshot
from qtapp.core.hardware.probe import HardwareProbe

pytestmark = pytest.mark.timeout(120)

REPLAY = Path(__file__).resolve().parents[1] / "fixtures" / "nvml" / "h200-idle.json"
GIB = 1024**3


def _run(
    overhead_mib: int,
    driver: str = "550.54.15",
    gpu: str = "NVIDIA H200",
    floats: bool = False,
    state: str = "finished",
) -> SimpleNamespace:
    """An evaluation that planned 10 GiB on CUDA0 (the built-in overhead in it) and saw NVML
    report the planned buffers plus ``overhead_mib``."""
    assumed = CUDA_OVERHEAD_F16 if floats else CUDA_OVERHEAD_QUANT
    buffers = 10 * GIB - assumed
    return SimpleNamespace(
        kind="eval",
        state=state,
        hardware={"gpus": [gpu], "gpu_driver": driver, "cpu_model": "x", "usable_cores": 2},
        metrics={
            "mem_pred_cuda0_bytes": 10 * GIB,
            "mem_pred_overhead_cuda0_bytes": assumed,
            "mem_peak_cuda0_bytes": buffers + overhead_mib * MIB,
            "mem_float_matrices": int(floats),
        },
    )


def test_overheads_are_measured_per_gpu_model_driver_and_weight_kind() -> None:
    runs = [
        _run(700),
        _run(720),
        _run(760),
        _run(900, floats=True),
        _run(650, driver="535.0"),
        _run(999, state="failed"),  # not a finished measurement
        SimpleNamespace(
            kind="eval",
            state="finished",
            hardware={"gpus": ["NVIDIA H200"]},
            metrics={"mem_pred_cuda0_bytes": GIB},
        ),  # fmt: skip
    ]
    found = overheads_from_runs(runs)
    h200 = found[("NVIDIA H200", "550.54.15")]
    assert h200.value(False) == 720 * MIB  # the median of three
    assert h200.value(True) == 900 * MIB and h200.runs == 4
    assert "NVIDIA H200 (driver 550.54.15) by 4 evaluations" in h200.source()
    assert found[("NVIDIA H200", "535.0")].value(False) == 650 * MIB
    assert set(found) == {("NVIDIA H200", "550.54.15"), ("NVIDIA H200", "535.0")}


def _report() -> object:
    return HardwareProbe(loader=lambda: ReplayNvml(load_snapshot(REPLAY))).report()


def _store(runs: list[SimpleNamespace]) -> None:
    from qtapp.core.results.store import ResultsStore

    with ResultsStore.open() as store:
        for r in runs:
            rid = store.begin_run("eval", "/m/tiny-Q4_K_M.gguf", "Q4_K_M", hardware=r.hardware)
            store.finish_run(rid, "finished", metrics=r.metrics)


def test_the_plan_uses_the_measured_overhead_of_this_gpu_and_driver(tiny_model: Path) -> None:
    from qtapp.core.fit.kv_model import ContextSettings
    from qtapp.core.fit.plan import PlanInputs, make_plan
    from qtapp.core.gguf.model import read_model

    report = _report()
    gpu = report.gpus[0]
    driver = report.driver_version
    assert driver, "the replayed snapshot names its driver"
    builtin = devices_from_report(report)[0]
    assert builtin.measured_overhead == (None, None) and builtin.overhead_source == ""
    assert builtin.cuda_overhead(False) == CUDA_OVERHEAD_QUANT
    _store([_run(1000, driver=driver, gpu=gpu.name), _run(1100, driver="1.0", gpu=gpu.name)])
    gpus = devices_from_report(report)
    assert gpus[0].cuda_overhead(False) == 1000 * MIB  # this driver's run, not the other's
    assert gpus[0].cuda_overhead(True) == CUDA_OVERHEAD_F16  # no float model measured
    assert f"your {gpu.name} (driver {driver}) by 1 evaluation" in gpus[0].overhead_source
    text = overhead_text(gpus)
    assert "CUDA0 1000 MiB" in text and "measured on your" in text
    assert overhead_text([builtin]).startswith("CUDA overhead: measured on an H200")

    m = read_model(tiny_model)
    cs = ContextSettings(n_ctx=512)
    plan_builtin = make_plan(PlanInputs(m, cs, [builtin]), ["Q4_K_M"])
    plan_measured = make_plan(PlanInputs(m, cs, gpus), ["Q4_K_M"])
    row_b, row_m = plan_builtin.row("Q4_K_M"), plan_measured.row("Q4_K_M")
    assert row_b.devices[0].overhead_bytes == CUDA_OVERHEAD_QUANT  # Q4_K_M: quantized matrices
    assert row_m.devices[0].overhead_bytes == 1000 * MIB
    assert row_m.devices[0].total_bytes - row_b.devices[0].total_bytes == (
        1000 * MIB - CUDA_OVERHEAD_QUANT
    )
