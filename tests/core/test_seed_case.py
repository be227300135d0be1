"""The seed case: a header-only Qwen3.5-397B-A17B (qwen35moe) planned at Q2_K and Q2_K_XL for
1x48 GiB and 2x48 GiB, with llama.cpp's exact dry runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtapp.core.fit.devices import GIB, Device, parse_gpu_spec
from qtapp.core.fit.exact import exact_memory, exact_weights
from qtapp.core.fit.kv_model import ContextSettings
from qtapp.core.fit.plan import PlanInputs, make_plan
from qtapp.core.gguf.model import read_model
from qtapp.testing.archs import QWEN35_397B, write_qwen35moe

HOST = Device("CPU", 256 * GIB, 256 * GIB, 80e9, False)


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_qwen35moe(
        tmp_path_factory.mktemp("seed") / "Qwen3.5-397B-A17B-BF16.gguf", QWEN35_397B
    )


def test_seed_file_is_sparse_and_has_the_public_shape(seed: Path) -> None:
    st = seed.stat()
    assert st.st_size > 700 * GIB  # BF16 on paper
    assert st.st_blocks * 512 < 64 * 1024 * 1024  # almost nothing on disk
    m = read_model(seed)
    assert m.architecture == "qwen35moe" and m.n_layer == 60
    assert 390e9 < m.n_params < 400e9
    assert 16e9 < m.n_params_active < 18.5e9
    assert m.n_expert == 512 and m.n_expert_used == 10 and m.n_expert_shared == 1
    assert sum(m.recurrent_layers) == 45 and m.n_head_kv == [2] * 60 and m.head_dim_k == 256
    assert m.n_vocab == 248320 and m.n_ctx_train == 262144


def test_seed_plans_partial_offload_on_one_and_two_gpus(seed: Path) -> None:
    m = read_model(seed)
    cs = ContextSettings(n_ctx=32768)
    targets = ["Q2_K", "Q2_K_XL"]
    weights = {t: exact_weights(m, t) for t in targets}
    exact = {cs: exact_memory(m, cs)}
    plans = {}
    for spec in ("1x48GiB", "2x48GiB"):
        inp = PlanInputs(m, cs, parse_gpu_spec(spec), HOST, weights=weights, exact=exact)
        plans[spec] = make_plan(inp, targets)
    for spec, plan in plans.items():
        for t in targets:
            row = plan.row(t)
            assert row is not None and row.weights_exact and row.memory_exact
            assert 120 * GIB < row.weights_bytes < 160 * GIB
            # 397B parameters at ~2.9 bits never fit in 48 or 96 GiB: partial, experts on CPU
            assert row.verdict == "partial", (spec, t)
            assert row.n_gpu_layers == 61 and row.n_cpu_moe > 0
            gpus = [d for d in row.devices if d.device != "CPU"]
            assert all(d.total_bytes <= d.budget_bytes for d in gpus)
            # routed experts of the CPU-side layers are the bulk of host memory
            assert row.devices[-1].weights_bytes > 40 * GIB
    for t in targets:
        one, two = plans["1x48GiB"].row(t), plans["2x48GiB"].row(t)
        assert two.n_cpu_moe < one.n_cpu_moe  # twice the VRAM keeps more experts on GPUs
        assert two.host_bytes < one.host_bytes - 40 * GIB
        assert two.predicted_tg_tps > one.predicted_tg_tps
        # both GPUs carry a real share
        assert min(d.weights_bytes for d in two.devices[:2]) > 30 * GIB
    # Q2_K_XL keeps sensitive tensors higher: bigger than Q2_K
    q2, xl = plans["2x48GiB"].row("Q2_K"), plans["2x48GiB"].row("Q2_K_XL")
    assert xl.weights_bytes > q2.weights_bytes
    assert plans["2x48GiB"].recommended in targets
    assert "host RAM" in plans["2x48GiB"].why
