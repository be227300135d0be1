"""Gemma 3 270M: the plan's figures against a real quantization and a real load by llama.cpp."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtapp.core.fit.devices import GIB, Device
from qtapp.core.fit.exact import exact_memory, exact_weights, memory_params
from qtapp.core.fit.kv_model import ContextSettings, kv_estimate
from qtapp.core.fit.plan import PlanInputs, current_weights, plan_row
from qtapp.core.gguf.model import read_model
from qtapp.core.jobs.job import run_job

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
HOST = Device("CPU", 64 * GIB, 64 * GIB, 40e9, False)


def test_predicted_q8_0_weights_equal_a_real_quantization(gemma_path: Path, tmp_path: Path) -> None:
    m = read_model(gemma_path)
    predicted = exact_weights(m, "Q8_0")
    out = tmp_path / "gemma-Q8_0.gguf"
    run_job("quantize", model=str(gemma_path), out=str(out), target="Q8_0", allow_requantize=True)
    real = read_model(out)
    assert real.weights_bytes == predicted.total  # tensor data, byte for byte
    types = {t.name: t.type for t in real.tensors}
    assert types == predicted.types
    # the file adds the metadata (tokenizer) the dry run does not count
    assert abs(out.stat().st_size - (predicted.total + m.meta_bytes)) < 0.001 * out.stat().st_size


@pytest.mark.parametrize("n_ctx,facts_mib", [(2048, 770), (32768, 860)])
def test_kv_and_compute_equal_a_real_load(gemma_path: Path, n_ctx: int, facts_mib: int) -> None:
    m = read_model(gemma_path)
    cs = ContextSettings(n_ctx=n_ctx)
    exact = exact_memory(m, cs)
    real = run_job("real_load", **memory_params(m, cs))
    cpu = real["devices"]["CPU"]
    # the analytic KV model, the dry load and the real load agree
    assert abs(kv_estimate(m, cs).kv_bytes - cpu["kv"]) <= 0.01 * MIB
    assert exact.kv_bytes == sum(c["bytes"] for c in real["kv_caches"])
    assert exact.compute_bytes == cpu["compute"]
    assert exact.output_bytes == cpu["output"]
    # the plan's CPU buffers are llama.cpp's projection from FACTS.md (770 / 860 MiB); its total
    # adds llama.cpp's own tables (bench/host_memory.py measures them)
    row = plan_row(PlanInputs(m, cs, [], HOST, exact={cs: exact}), current_weights(m))
    total = (row.devices[0].total_bytes - row.devices[0].overhead_bytes) / MIB
    assert abs(total - facts_mib) < 3, total
    assert row.devices[0].weights_bytes == real["weights_bytes"]


def test_host_plan_equals_llamas_own_cpu_buffers(gemma_path: Path) -> None:
    """The repacked copies and the mapped pages the plan counts are the buffers llama.cpp logs
    for a real load with this build (CPU_REPACK on AVX2 / AVX512 CPUs, AMX where built)."""
    from qtapp.core.fit.host_memory import HostLoad
    from qtapp.core.fit.sources import build_repack

    m = read_model(gemma_path)
    cs = ContextSettings(n_ctx=2048)
    real = run_job("real_load", **memory_params(m, cs))
    load = HostLoad("mmap", build_repack())
    cpu = plan_row(PlanInputs(m, cs, [], HOST, load=load), current_weights(m)).devices[0]
    devices = real["devices"]
    logged_copies = sum(devices.get(k, {}).get("model", 0) for k in ("CPU_REPACK", "AMX"))
    assert abs((cpu.weights_bytes - cpu.mapped_bytes) - logged_copies) <= 0.01 * MIB
    # every tensor's pages are mapped (Gemma's copied tensors lie between mapped ones): the
    # mapped buffer is the pages in use plus the originals read once
    mapped = devices["CPU"]["model"]
    assert abs(cpu.mapped_bytes + cpu.load_cache_bytes - mapped) <= 0.01 * MIB
    if load.repack.kinds:
        assert logged_copies > 0


def test_every_target_sizes_the_same_on_a_lean_header(gemma_path: Path) -> None:
    """The fit table's dry runs size a header copy without Gemma's 262k-token vocabulary: every
    tensor's type and bytes are what llama.cpp decides on the real file."""
    from qtapp.core.fit.plan import targets_for

    targets = targets_for(read_model(gemma_path))
    runs = [
        run_job("dry_quantize_many", model=str(gemma_path), targets=targets, lean=lean)
        for lean in (True, False)
    ]
    assert runs[0]["errors"] == runs[1]["errors"] == {}
    assert runs[0]["results"] == runs[1]["results"]
    assert len(runs[0]["results"]) == len(targets)
