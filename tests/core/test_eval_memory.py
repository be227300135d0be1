"""The evaluation's memory figures: the worker's RSS, the plan for its settings, the peaks."""

from __future__ import annotations

import os
from pathlib import Path

from qtapp.core.evaluate.memory import (
    MemoryTracker,
    eval_context_settings,
    eval_offload,
    predict,
    process_rss,
)
from qtapp.core.hardware.nvml_replay import ReplayNvml, load_snapshot
from qtapp.core.hardware.probe import HardwareProbe

REPLAY = Path(__file__).resolve().parents[1] / "fixtures" / "nvml" / "h200-idle.json"


def test_process_rss_reads_proc_status() -> None:
    rss = process_rss(os.getpid())
    assert rss is not None and rss > 10 * 1024**2
    assert process_rss(None) is None and process_rss(2**30) is None


def test_context_settings_match_the_job() -> None:
    cs = eval_context_settings({"ctx": 512})
    assert (cs.n_seq_max, cs.n_ctx, cs.n_batch, cs.type_k) == (4, 2048, 2048, "f16")
    cs = eval_context_settings({"ctx": 4096})
    assert (cs.n_seq_max, cs.n_ctx, cs.n_batch) == (1, 4096, 2048)
    assert eval_offload({}, True, 1) == -1 and eval_offload({}, False, 1) == 0
    assert eval_offload({}, None, 0) == 0 and eval_offload({"n_gpu_layers": 5}, True, 1) == 5


def test_plan_and_peaks_with_the_replayed_gpu(tiny_model: Path) -> None:
    probe = HardwareProbe(loader=lambda: ReplayNvml(load_snapshot(REPLAY)))
    report = probe.report()
    gpu_plan, note = predict(tiny_model, {"ctx": 256}, report, True)
    assert gpu_plan["CUDA0"] > 0 and "all layers on the GPU" in note
    cpu_plan, note = predict(tiny_model, {"ctx": 256}, report, False)
    assert cpu_plan["CUDA0"] == 0 and cpu_plan["CPU"] > gpu_plan["CPU"] and "CPU only" in note
    tracker = MemoryTracker.for_report(report, gpu_plan)
    tracker.sample(report, 100)
    tracker.sample(probe.poll(), 300)
    tracker.sample(report, None)  # the worker has exited: the peak stays
    assert tracker.metrics() == {
        "mem_peak_cuda0_bytes": 644_939_776,
        "mem_pred_cuda0_bytes": gpu_plan["CUDA0"],
        "mem_peak_host_rss_bytes": 300,
        "mem_pred_cpu_bytes": gpu_plan["CPU"],
        # the CUDA overhead inside the GPU's plan (the tiny model is quantized)
        "mem_pred_overhead_cuda0_bytes": 613 * 1024**2,
        "mem_float_matrices": 0,
    }
    assert "CUDA0/overhead" not in cpu_plan  # a CPU-only run puts nothing on the GPU
