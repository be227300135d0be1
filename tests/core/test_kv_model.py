"""The analytic KV / recurrent-state / compute model against llama.cpp's own dry loads.

One child process loads each tiny architecture (no_alloc, LLAMA_LOAD_MODE_NONE) at several
context settings; the analytic figures must match llama.cpp's logged buffer sizes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qtapp.core.fit.exact import figures_from_result, memory_params
from qtapp.core.fit.kv_model import ContextSettings, compute_estimate, kv_estimate, output_buffer
from qtapp.core.gguf.model import read_model
from qtapp.core.jobs.job import run_job
from qtapp.testing.archs import write_qwen35moe, write_tiny_gemma3, write_tiny_qwen3moe

MIB = 1024 * 1024
#: llama.cpp logs sizes in MiB with two decimals
LOG_ROUNDING = 0.006 * MIB

SETTINGS = [
    ContextSettings(n_ctx=4096),
    ContextSettings(n_ctx=1000, type_k="q8_0", type_v="q8_0"),
    ContextSettings(n_ctx=8192, type_k="q4_0", type_v="f16", swa_full=True),
    ContextSettings(n_ctx=2048, flash_attn="off", n_ubatch=256),
]


@pytest.fixture(scope="module")
def dry_loads(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, object]:
    d = tmp_path_factory.mktemp("kv")
    paths = {
        "llama-gqa": tiny_model,
        "gemma3-swa": write_tiny_gemma3(d / "g3.gguf"),
        "qwen3moe": write_tiny_qwen3moe(d / "q3m.gguf"),
        "qwen35moe-hybrid": write_qwen35moe(d / "q35.gguf"),
    }
    models = {k: read_model(p) for k, p in paths.items()}
    configs = [memory_params(models[k], cs) for k in paths for cs in SETTINGS]
    runs = run_job("dry_load_many", configs=configs)["runs"]
    out: dict[str, object] = {}
    i = 0
    for k in paths:
        for cs in SETTINGS:
            out[f"{k}|{SETTINGS.index(cs)}"] = (models[k], cs, runs[i])
            i += 1
    return out


@pytest.mark.parametrize("arch", ["llama-gqa", "gemma3-swa", "qwen3moe", "qwen35moe-hybrid"])
@pytest.mark.parametrize("which", range(len(SETTINGS)))
def test_kv_and_state_match_llama_cpp(dry_loads: dict, arch: str, which: int) -> None:
    m, cs, run = dry_loads[f"{arch}|{which}"]
    exact = figures_from_result(run)
    est = kv_estimate(m, cs)
    assert abs(est.kv_bytes - exact.kv_bytes) <= LOG_ROUNDING * 2, (est.kv_bytes, exact.kv_bytes)
    assert abs(est.recurrent_bytes - exact.recurrent_bytes) <= LOG_ROUNDING
    cells = {c["cells"] for c in run["kv_caches"]}
    assert est.cells in cells
    if any(m.swa_layers):
        assert est.swa_cells in cells
    if m.is_hybrid:
        assert exact.recurrent_bytes > 0 and est.recurrent_bytes > 0
    assert abs(output_buffer(m, cs) - exact.output_bytes) <= LOG_ROUNDING


@pytest.mark.parametrize("arch", ["llama-gqa", "gemma3-swa", "qwen3moe", "qwen35moe-hybrid"])
@pytest.mark.parametrize("which", range(len(SETTINGS)))
def test_compute_estimate_is_close(dry_loads: dict, arch: str, which: int) -> None:
    """The compute buffer is an estimate (the dry load replaces it): within 3 MiB or 15%."""
    m, cs, run = dry_loads[f"{arch}|{which}"]
    exact = figures_from_result(run).compute_bytes
    est = compute_estimate(m, cs)
    assert abs(est - exact) <= max(3 * MIB, 0.15 * exact), (est, exact)


def test_swa_full_grows_the_cache(dry_loads: dict) -> None:
    m, _cs, _ = dry_loads["gemma3-swa|0"]
    small = kv_estimate(m, ContextSettings(n_ctx=8192))
    full = kv_estimate(m, ContextSettings(n_ctx=8192, swa_full=True))
    assert full.kv_bytes > 3 * small.kv_bytes


def test_quantized_v_turns_flash_attention_on() -> None:
    assert ContextSettings(type_v="q8_0", flash_attn="off").flash_attn_on
    assert not ContextSettings(flash_attn="off").flash_attn_on
    assert ContextSettings(type_v="q4_0").to_dict()["flash_attn"] == "on"
