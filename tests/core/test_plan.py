"""Planning: placement as llama.cpp places layers, verdicts, recommendation, CLI contract."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from qtapp.core.errors import QuantLensError
from qtapp.core.fit.devices import DEFAULT_MARGIN as DEFAULT_MARGIN_BYTES
from qtapp.core.fit.devices import GIB, MIB, Device, parse_gpu_spec
from qtapp.core.fit.kv_model import ContextSettings
from qtapp.core.fit.plan import (
    PlanInputs,
    current_weights,
    estimate_weights,
    layer_devices,
    make_plan,
    plan_row,
)
from qtapp.core.gguf.model import read_model
from qtapp.testing.archs import write_tiny_qwen3moe

HOST = Device("CPU", 64 * GIB, 64 * GIB, 50e9, False)


def test_parse_gpu_spec() -> None:
    two = parse_gpu_spec("2x48GiB")
    assert [d.name for d in two] == ["CUDA0", "CUDA1"]
    assert all(d.total_bytes == 48 * GIB for d in two)
    mixed = parse_gpu_spec("24GiB, 12GiB")
    assert [d.free_bytes for d in mixed] == [24 * GIB, 12 * GIB]
    assert parse_gpu_spec("1x512MiB")[0].total_bytes == 512 * MIB
    with pytest.raises(QuantLensError, match="2x48GiB"):
        parse_gpu_spec("lots of memory")


def test_layer_split_like_llama_cpp() -> None:
    gpus = parse_gpu_spec("2x24GiB")
    # all 32 layers + output: llama.cpp's upper_bound over [0.5, 1.0]
    where = layer_devices(32, 33, gpus)
    assert where[:17] == [0] * 17 and where[17:] == [1] * 16
    # ngl 10: the last 9 blocks and the output layer on the GPUs
    where = layer_devices(32, 10, gpus)
    assert where[:23] == [-1] * 23 and all(d >= 0 for d in where[23:])
    # tensor_split 3:1
    where = layer_devices(32, 33, gpus, [3, 1])
    assert where.count(0) == 25 and where.count(1) == 8
    assert layer_devices(32, 0, gpus) == [-1] * 33


def test_full_offload_per_device_breakdown(tiny_model: Path) -> None:
    m = read_model(tiny_model)
    inp = PlanInputs(m, ContextSettings(n_ctx=4096), parse_gpu_spec("1x8GiB"), HOST)
    row = plan_row(inp, current_weights(m))
    gpu, cpu = row.devices
    assert row.verdict == "fits" and row.n_gpu_layers == m.n_layer + 1
    embd = next(t.bytes for t in m.tensors if t.name == "token_embd.weight")
    assert cpu.weights_bytes == embd  # the input layer stays on the CPU
    assert gpu.weights_bytes == m.weights_bytes - embd
    assert gpu.kv_bytes == 4096 * 4 * 2 * 128 * 2  # cells x layers x (K+V) x kv dim x f16
    assert gpu.overhead_bytes in (613 * MIB, 826 * MIB)
    # llama.cpp's own tables: a fixed part, its vocabulary, the mapped header
    assert cpu.overhead_bytes == 1_310_720 + 200 * m.n_vocab + m.meta_bytes
    assert gpu.total_bytes == (
        gpu.weights_bytes + gpu.kv_bytes + gpu.compute_bytes + gpu.overhead_bytes
    )


def test_partial_offload_when_vram_is_short(tiny_model: Path) -> None:
    m = read_model(tiny_model)
    w = current_weights(m)
    roomy = plan_row(PlanInputs(m, ContextSettings(n_ctx=4096), parse_gpu_spec("1x8GiB"), HOST), w)
    need = roomy.devices[0].total_bytes
    short = need + 1024 * MIB - 1  # one byte too little, with the default 1024 MiB margin
    inp = PlanInputs(m, ContextSettings(n_ctx=4096), [Device("CUDA0", short, short, 1e12)], HOST)
    row = plan_row(inp, w)
    assert row.verdict == "partial"
    assert 0 < row.n_gpu_layers < m.n_layer + 1
    gpu = row.devices[0]
    assert gpu.total_bytes <= gpu.budget_bytes
    assert row.note.endswith("layers on the GPUs")
    # an explicit ngl is evaluated as given, even when it overflows
    forced = plan_row(inp, w, ngl=-1)
    assert forced.n_gpu_layers == m.n_layer + 1 and forced.verdict == "no"


def test_moe_experts_go_to_cpu_first(tmp_path: Path) -> None:
    m = read_model(write_tiny_qwen3moe(tmp_path / "moe.gguf"))
    w = current_weights(m)
    expert_layer = sum(t.bytes for t in m.tensors if t.is_expert and t.layer == 0)
    needed = plan_row(PlanInputs(m, ContextSettings(), parse_gpu_spec("1x64GiB"), HOST), w)
    gpu_need = needed.devices[0].total_bytes
    tight = Device(
        "CUDA0",
        gpu_need + 1024 * MIB - 2 * expert_layer,
        gpu_need + 1024 * MIB - 2 * expert_layer,
        1e12,
    )
    row = plan_row(PlanInputs(m, ContextSettings(), [tight], HOST), w)
    assert row.verdict == "partial"
    assert row.n_gpu_layers == m.n_layer + 1  # every block stays on the GPU ...
    assert row.n_cpu_moe == 2  # ... but two blocks' experts move to the CPU
    assert "experts" in row.note


def test_cpu_only_plan(tiny_model: Path) -> None:
    m = read_model(tiny_model)
    plan = make_plan(PlanInputs(m, ContextSettings(n_ctx=2048), [], HOST), ["Q8_0", "Q4_K_M"])
    assert [d.name for d in plan.devices] == ["CPU"]
    assert all(len(r.devices) == 1 and r.devices[0].device == "CPU" for r in plan.rows)
    assert plan.recommended == "Q8_0"
    assert plan.rows[0].devices[0].compute_bytes > 0
    tiny_host = Device("CPU", 1 * MIB, 1 * MIB, 50e9, False)
    none = make_plan(PlanInputs(m, ContextSettings(), [], tiny_host), ["Q4_K_M"])
    assert none.recommended is None and all(r.verdict == "no" for r in none.rows)


def test_recommendation_and_largest_context(tiny_model: Path) -> None:
    m = read_model(tiny_model)
    gpu = Device("CUDA0", 1900 * MIB, 1900 * MIB, 1e12)
    plan = make_plan(
        PlanInputs(m, ContextSettings(n_ctx=2048), [gpu], HOST),
        ["F16", "Q8_0", "Q6_K", "Q4_K_M", "Q2_K"],
    )
    rec = plan.row(plan.recommended or "")
    assert rec is not None and rec.verdict == "fits"
    # nothing of higher quality fits fully
    from qtapp.core.fit.quants import quality_rank

    better = [
        r
        for r in plan.rows
        if r.type not in ("current",) and quality_rank(r.type) > quality_rank(rec.type)
    ]
    assert all(r.verdict != "fits" for r in better)
    assert plan.recommended_ctx and plan.recommended_ctx >= 2048
    assert plan.recommended in plan.why and ("GiB" in plan.why or "MiB" in plan.why)
    # one step beyond the largest context no longer fits fully
    over = plan_row(
        PlanInputs(m, ContextSettings(n_ctx=plan.recommended_ctx + 256), [gpu], HOST),
        estimate_weights(m, rec.type),
    )
    assert over.verdict != "fits" or plan.recommended_ctx >= m.n_ctx_train


def test_plan_on_two_gpus_has_a_row_per_type(tiny_model: Path) -> None:
    m = read_model(tiny_model)
    inp = PlanInputs(m, ContextSettings(n_ctx=8192), parse_gpu_spec("2x24GiB"), HOST)
    plan = make_plan(inp)
    assert len(plan.rows) > 30


def test_cli_json_contract(tiny_model: Path, quantlens_home: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qtapp",
            "plan",
            str(tiny_model),
            "--ctx",
            "2048",
            "--kv",
            "q8_0",
            "--gpus",
            "2x1GiB",
            "--types",
            "Q8_0,Q4_K_M,Q4_K_XL",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"model", "hardware", "recommended", "rows"} <= set(data)
    types = [r["type"] for r in data["rows"]]
    assert types == ["current", "Q8_0", "Q4_K_M", "Q4_K_XL"]
    for r in data["rows"]:
        assert r["verdict"] in ("fits", "partial", "no")
        assert isinstance(r["weights_bytes"], int) and isinstance(r["n_gpu_layers"], int)
        assert isinstance(r["predicted_tg_tps"], float)
        assert [d["device"] for d in r["devices"]] == ["CUDA0", "CUDA1", "CPU"]
        for d in r["devices"]:
            assert d["total_bytes"] == (
                d["weights_bytes"] + d["kv_bytes"] + d["compute_bytes"] + d["overhead_bytes"]
            )
        assert r["weights_exact"] is True  # llama.cpp's dry run ran
    q8 = next(r for r in data["rows"] if r["type"] == "Q8_0")
    from qtapp.core.jobs.job import run_job

    exact = run_job("dry_quantize", model=str(tiny_model), target="Q8_0")["bytes"]
    assert q8["weights_bytes"] == exact
    assert data["settings"]["type_v"] == "q8_0" and data["settings"]["flash_attn"] == "on"


def test_cli_table_and_bad_model(tmp_path: Path, tiny_model: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qtapp",
            "plan",
            str(tiny_model),
            "--fast",
            "--gpus",
            "1x4GiB",
            "--types",
            "Q4_K_M",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "Recommended:" in out.stdout and "Q4_K_M" in out.stdout and "CUDA0" in out.stdout
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model at all")
    out = subprocess.run(
        [sys.executable, "-m", "qtapp", "plan", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "GGUF" in out.stderr


def test_auto_split_is_reproducible_with_llama_flags(tiny_model: Path) -> None:
    """The chosen -ngl / -ts, fed back as an explicit setting, give the same placement."""
    m = read_model(tiny_model)
    w = current_weights(m)
    cs = ContextSettings(n_ctx=8192)
    roomy = plan_row(PlanInputs(m, cs, parse_gpu_spec("2x8GiB"), HOST), w)
    need = sum(d.total_bytes for d in roomy.devices[:2])
    each = need // 2 + 1024 * MIB - 2 * MIB  # a little short: some layers must stay on the CPU
    gpus = [Device("CUDA0", each, each, 1e12), Device("CUDA1", each, each, 1e12)]
    auto = plan_row(PlanInputs(m, cs, gpus, HOST), w)
    assert auto.verdict == "partial" and auto.tensor_split
    assert auto.llama_args.startswith(f"-ngl {auto.n_gpu_layers} -ts ")
    again = plan_row(
        PlanInputs(m, cs, gpus, HOST, ngl=auto.n_gpu_layers, tensor_split=auto.tensor_split), w
    )
    assert [d.total_bytes for d in again.devices] == [d.total_bytes for d in auto.devices]


# -- quality order from the user's measurements -------------------------------------------------

ROOMY = [Device("CUDA0", 64 * GIB, 64 * GIB, 1e12)]
SOME_TYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M"]


def _eval_run(store: Any, path: Path, kld: float | None, ppl: float, base: Path) -> int:
    """An evaluation run as eval_runs.EvalRecorder stores it (the file need not exist)."""
    metrics: dict[str, float] = {"ppl": ppl}
    if kld is not None:
        metrics["kld_mean"] = kld
    settings = {"model": str(path), "base": str(base)}
    run = store.begin_run("eval", path, path.name, settings=settings)
    store.finish_run(run, "finished", metrics=metrics)
    return int(run)


def test_measured_kld_reorders_only_the_measured_types(tiny_model: Path) -> None:
    from qtapp.core.fit.quality_order import measured_order
    from qtapp.core.results.store import ResultsStore

    m = read_model(tiny_model)
    folder = tiny_model.parent
    published = make_plan(PlanInputs(m, ContextSettings(n_ctx=512), ROOMY, HOST), SOME_TYPES)
    assert published.recommended == "Q8_0" and "(measured)" not in published.why
    with ResultsStore.open() as store:
        # the user measured Q6_K closer to the base than Q8_0 (and Q4_K_M), by mean KLD
        _eval_run(store, folder / "tiny-llama-Q8_0.gguf", 0.020, 9.0, tiny_model)
        _eval_run(store, folder / "tiny-llama-Q6_K.gguf", 0.010, 9.5, tiny_model)
        _eval_run(store, folder / "tiny-llama-Q4_K_M.gguf", 0.050, 8.0, tiny_model)
        # another model's measurements and an unfinished run are ignored
        _eval_run(store, folder / "other-model-Q3_K_M.gguf", 0.0001, 1.0, folder / "other.gguf")
        store.begin_run("eval", folder / "tiny-llama-Q5_K_M.gguf", "running")
    order = measured_order(m)
    assert order.metric == "kld" and set(order.measured) == {"Q8_0", "Q6_K", "Q4_K_M"}
    inp = PlanInputs(m, ContextSettings(n_ctx=512), ROOMY, HOST, quality=order)
    ranked = sorted(SOME_TYPES, key=lambda t: -inp.rank(t))
    # Q6_K takes Q8_0's place; unmeasured Q5_K_M and Q3_K_M keep theirs
    assert ranked == ["Q6_K", "Q8_0", "Q5_K_M", "Q4_K_M", "Q3_K_M"]
    plan = make_plan(inp, SOME_TYPES)
    assert plan.recommended == "Q6_K"
    assert plan.why.startswith("Q6_K (measured)") and "mean KLD" in plan.why
    assert plan.row("Q6_K").measured_quality == 0.010  # type: ignore[union-attr]
    assert plan.to_dict()["quality_order"]["source"] == "measured"


def test_measured_ppl_when_no_kld_and_single_measurement_changes_nothing(
    tiny_model: Path,
) -> None:
    from qtapp.core.fit.quality_order import measured_order
    from qtapp.core.results.store import ResultsStore

    m = read_model(tiny_model)
    folder = tiny_model.parent
    with ResultsStore.open() as store:
        _eval_run(store, folder / "tiny-llama-Q8_0.gguf", None, 12.0, tiny_model)
    one = measured_order(m)
    assert one.source == "published" and not one.is_measured("Q8_0")
    with ResultsStore.open() as store:
        # measured by PPL only (no base model); the renamed file is matched by its name suffix
        _eval_run(store, folder / "TINY-LLAMA.q5_k_m.gguf", None, 11.0, folder / "x.gguf")
    order = measured_order(m)
    assert order.metric == "ppl" and set(order.measured) == {"Q8_0", "Q5_K_M"}
    plan = make_plan(
        PlanInputs(m, ContextSettings(n_ctx=512), ROOMY, HOST, quality=order), SOME_TYPES
    )
    assert plan.recommended == "Q5_K_M" and "(measured)" in plan.why and "PPL" in plan.why


# -- user recipes ---------------------------------------------------------------------------------


def _my_recipe() -> object:
    from qtapp.core.fit.quants import Recipe, Rule

    return Recipe("my-q4", "Q4_K_M", (Rule(r"ffn_down", "Q8_0", "keep ffn_down"),), builtin=False)


def test_user_recipe_rows_rank_above_their_base(tiny_model: Path) -> None:
    recipe = _my_recipe()
    m = read_model(tiny_model)
    inp = PlanInputs(m, ContextSettings(n_ctx=512), ROOMY, HOST, recipes={"my-q4": recipe})  # type: ignore[dict-item]
    plan = make_plan(inp)
    names = [r.type for r in plan.rows]
    assert "my-q4" in names
    assert names.index("Q4_K_XL") < names.index("my-q4") < names.index("Q4_K_M")
    row = plan.row("my-q4")
    assert row is not None and row.user_recipe and not row.weights_exact
    assert row.weights_bytes > plan.row("Q4_K_M").weights_bytes  # type: ignore[union-attr]


def test_cli_plans_a_saved_user_recipe_exactly(tiny_model: Path, quantlens_home: Path) -> None:
    from qtapp.core.fit.recipes_store import save_user_recipe
    from qtapp.core.jobs.job import run_job
    from qtapp.core.results.store import ResultsStore

    recipe = _my_recipe()
    save_user_recipe(recipe)  # type: ignore[arg-type]
    with ResultsStore.open() as store:  # the user evaluated their recipe and Q4_K_M
        _eval_run(store, tiny_model.parent / "tiny-llama-my-q4.gguf", 0.01, 9.0, tiny_model)
        _eval_run(store, tiny_model.parent / "tiny-llama-Q4_K_M.gguf", 0.02, 9.1, tiny_model)
    out = subprocess.run(
        [sys.executable, "-m", "qtapp", "plan", str(tiny_model), "--gpus", "1x4GiB"]
        + ["--types", "Q4_K_M,MY-Q4", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    rows = {r["type"]: r for r in data["rows"]}
    mine = rows["my-q4"]
    assert data["quality_order"]["source"] == "measured" and mine["measured_quality"] == 0.01
    assert mine["user_recipe"] is True and mine["weights_exact"] is True
    exact = run_job(
        "dry_quantize",
        model=str(tiny_model),
        target="my-q4",
        user_recipes=[recipe.to_dict()],  # type: ignore[attr-defined]
    )["bytes"]
    assert mine["weights_bytes"] == exact > rows["Q4_K_M"]["weights_bytes"]


# -- bad files ----------------------------------------------------------------------------------


def _bad_files(folder: Path, good: Path) -> dict[str, Path]:
    data = good.read_bytes()
    files = {
        "not a GGUF": b"this is a text file, not a model\n",
        "empty": b"",
        "header cut": data[:3000],
        "tensor data cut": data[: len(data) // 2],
        "hostile counts": b"GGUF" + (3).to_bytes(4, "little") + (2**60).to_bytes(8, "little") * 2,
    }
    out = {}
    for i, (what, blob) in enumerate(files.items()):
        out[what] = folder / f"bad{i}.gguf"
        out[what].write_bytes(blob)
    out["missing"] = folder / "nowhere.gguf"
    out["a folder"] = folder
    return out


def test_cli_bad_files_fail_with_one_line(tmp_path: Path, tiny_model: Path) -> None:
    for what, path in _bad_files(tmp_path, tiny_model).items():
        out = subprocess.run(
            [sys.executable, "-m", "qtapp", "plan", str(path), "--gpus", "1x8GiB"],
            capture_output=True,
            text=True,
            timeout=30,  # a guard against a hang, not a speed check
            check=False,
        )
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2, (what, out.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (what, out.stderr)
        assert "Traceback" not in out.stderr and out.stdout == ""
    assert tiny_model.read_bytes()[:4] == b"GGUF"  # the good model was never touched


def test_measured_only_when_a_measurement_decided(tiny_model: Path) -> None:
    from qtapp.core.fit.quality_order import Measurement, QualityOrder

    m = read_model(tiny_model)

    def plan_with(kld: dict[str, float], gpus: list[Device]) -> object:
        order = QualityOrder({t: Measurement(t, "kld", v, 1, t) for t, v in kld.items()}, "kld")
        return make_plan(
            PlanInputs(m, ContextSettings(n_ctx=512), gpus, HOST, quality=order), SOME_TYPES
        )

    agrees = plan_with({"Q8_0": 0.01, "Q6_K": 0.02}, ROOMY)
    assert agrees.recommended == "Q8_0" and "measured" not in agrees.why  # type: ignore[attr-defined]
    # Q8_0 does not fit a tiny GPU; Q6_K does, and Q8_0 was measured: the comparison says so
    q8 = make_plan(PlanInputs(m, ContextSettings(n_ctx=512), ROOMY, HOST), ["Q8_0", "Q6_K"])
    need = q8.row("Q6_K").devices[0].total_bytes + DEFAULT_MARGIN_BYTES  # type: ignore[union-attr]
    small = [Device("CUDA0", need, need, 1e12)]
    tight = plan_with({"Q8_0": 0.01, "Q6_K": 0.02}, small)
    assert tight.recommended == "Q6_K" and "Q8_0 (measured) needs" in tight.why  # type: ignore[attr-defined]


# -- measured and calibrated speeds -------------------------------------------------------------


def _speed_run(
    store: Any,
    path: Path,
    tg: float,
    pp: float | None,
    base: Path,
    hardware: dict[str, Any] | None = None,
    ngl: int = 0,
    threads: int | None = None,
) -> int:
    """An evaluation with speed, as EvalRecorder stores it (hardware: this machine's)."""
    from types import SimpleNamespace

    from qtapp.core.fit.measured_speed import hardware_record, usable_cores

    hw = hardware if hardware is not None else hardware_record(SimpleNamespace(gpus=()))
    metrics: dict[str, Any] = {"ppl": 9.0, "tg_tps": tg, "tg_tps_sd": 0.5}
    if pp is not None:
        metrics.update(pp_tps=pp, pp_tps_sd=8.0)
    metrics.update(n_gpu_layers=ngl, threads=threads or usable_cores())
    settings = {"model": str(path), "base": str(base), "speed": True}
    run = store.begin_run("eval", path, path.name, hardware=hw, settings=settings)
    store.finish_run(run, "finished", metrics=metrics)
    return int(run)


def test_measured_speeds_replace_and_calibrate_the_cpu_rows(tiny_model: Path) -> None:
    import statistics

    from qtapp.core.fit.measured_speed import hardware_record, measured_speeds
    from qtapp.core.results.store import ResultsStore

    m = read_model(tiny_model)
    folder = tiny_model.parent
    cs = ContextSettings(n_ctx=512)
    before = make_plan(PlanInputs(m, cs, [], HOST), SOME_TYPES)
    assert all(r.speed_source == "predicted" for r in before.rows)
    pred = {r.type: (r.predicted_tg_tps, r.predicted_pp_tps) for r in before.rows}
    # shown speeds are for a full context (depth 512): predicted there, and the depth-0
    # measurements scaled to it by the predicted cost of depth
    at_ctx = {r.type: (r.predicted_at_depth("tg"), r.predicted_at_depth("pp")) for r in before.rows}
    scale = {t: (at_ctx[t][0] / pred[t][0], at_ctx[t][1] / pred[t][1]) for t in pred}
    assert all(0 < tg < 1 and 0 < pp < 1 for tg, pp in scale.values())
    with ResultsStore.open() as store:
        _speed_run(store, folder / "tiny-llama-Q8_0.gguf", 47.0, 700.0, tiny_model)
        _speed_run(store, folder / "tiny-llama-Q3_K_M.gguf", 54.0, None, tiny_model)
        # another CPU, another thread count, another model: none of them counts
        other_cpu = {**hardware_record(), "cpu_model": "Some Other CPU 9000"}
        _speed_run(store, folder / "tiny-llama-Q6_K.gguf", 900.0, 9e4, tiny_model, other_cpu)
        _speed_run(store, folder / "tiny-llama-Q5_K_M.gguf", 1.0, 1.0, tiny_model, threads=99)
        _speed_run(store, folder / "other-Q4_K_M.gguf", 1.0, 1.0, folder / "other.gguf")
    speeds = measured_speeds(m)
    assert {s.type for s in speeds.measurements} == {"Q8_0", "Q3_K_M", "Q6_K", "Q5_K_M"}
    plan = make_plan(PlanInputs(m, cs, [], HOST, speeds=speeds), SOME_TYPES)
    q8, q3, q4 = (plan.row(t) for t in ("Q8_0", "Q3_K_M", "Q4_K_M"))
    assert q8 is not None and q3 is not None and q4 is not None
    assert q8.speed_source == "measured"
    assert q8.tg_tps == pytest.approx(47.0 * scale["Q8_0"][0])
    assert q8.pp_tps == pytest.approx(700.0 * scale["Q8_0"][1])
    assert "measured at depth 0, scaled to depth 512" in q8.measured_how["tg"]
    assert q8.predicted_tg_tps == pytest.approx(pred["Q8_0"][0])  # the prediction is kept
    # Q3_K_M measured tg only: its pp is calibrated from Q8_0's
    assert q3.speed_source_of("tg") == "measured" and q3.speed_source_of("pp") == "calibrated"
    tg_ratio = statistics.median([47.0 / pred["Q8_0"][0], 54.0 / pred["Q3_K_M"][0]])
    pp_ratio = 700.0 / pred["Q8_0"][1]
    assert q4.speed_source == "calibrated"
    assert q4.tg_tps == pytest.approx(at_ctx["Q4_K_M"][0] * tg_ratio)
    assert q4.pp_tps == pytest.approx(at_ctx["Q4_K_M"][1] * pp_ratio)
    assert plan.row("Q6_K").speed_source == "calibrated"  # type: ignore[union-attr]
    assert plan.speed_calibration["cpu"]["n"] == 2
    d = plan.to_dict()
    row = next(r for r in d["rows"] if r["type"] == "Q8_0")
    assert row["speed_source"] == "measured" and row["measured_tg_tps"] == 47.0
    assert row["predicted_tg_tps"] == pytest.approx(pred["Q8_0"][0], rel=1e-3)
    row = next(r for r in d["rows"] if r["type"] == "Q4_K_M")
    assert row["speed_source"] == "calibrated" and row["calibration_n"] == 2
    assert "measured_tg_tps" not in row
    assert "tokens/s measured" in plan.why or "calibrated from 2" in plan.why
    # a GPU plan places every row elsewhere: CPU measurements neither show nor calibrate
    gpu = make_plan(PlanInputs(m, cs, ROOMY, HOST, speeds=speeds), SOME_TYPES)
    assert {r.speed_source for r in gpu.rows} == {"predicted"} and not gpu.speed_calibration


def test_gpu_measurements_count_only_on_the_same_gpus(tiny_model: Path) -> None:
    from qtapp.core.fit.measured_speed import hardware_record, measured_speeds
    from qtapp.core.results.store import ResultsStore

    m = read_model(tiny_model)
    hw = {**hardware_record(), "gpus": ["NVIDIA H200"]}
    with ResultsStore.open() as store:
        _speed_run(
            store, tiny_model.parent / "tiny-llama-Q4_K_M.gguf", 900.0, 5e4, tiny_model, hw, -1
        )
    speeds = measured_speeds(m)
    cs = ContextSettings(n_ctx=512)
    h200 = [Device("CUDA0", 140 * GIB, 140 * GIB, 4.8e12, True, "GPU 0: NVIDIA H200")]
    plan = make_plan(PlanInputs(m, cs, h200, HOST, speeds=speeds), SOME_TYPES)
    q4 = plan.row("Q4_K_M")
    assert q4 is not None and q4.speed_source == "measured"
    assert q4.tg_tps == pytest.approx(900.0 * q4.predicted_at_depth("tg") / q4.predicted_tg_tps)
    assert plan.row("Q8_0").speed_source == "calibrated"  # type: ignore[union-attr]
    a100 = [replace(h200[0], label="GPU 0: NVIDIA A100")]
    other = make_plan(PlanInputs(m, cs, a100, HOST, speeds=speeds), SOME_TYPES)
    assert {r.speed_source for r in other.rows} == {"predicted"}
    cpu = make_plan(PlanInputs(m, cs, [], HOST, speeds=speeds), SOME_TYPES)
    assert {r.speed_source for r in cpu.rows} == {"predicted"}


def test_eval_runs_record_the_hardware(tiny_model: Path) -> None:
    from qtapp.core.evaluate.runs import EvalRecorder
    from qtapp.core.fit.measured_speed import usable_cores
    from qtapp.core.jobs.events import Finished
    from qtapp.core.results.store import ResultsStore

    rec = EvalRecorder(tiny_model, {"model": str(tiny_model), "speed": True})
    rec.begin()
    rec.add(Finished(result={"tg_tps": 12.0, "pp_tps": 100.0, "n_gpu_layers": 0}))
    rec.finish()
    with ResultsStore.open() as store:
        run = store.get_run(rec.run_id)  # type: ignore[arg-type]
    assert run.hardware is not None and run.hardware["usable_cores"] == usable_cores()
    assert isinstance(run.hardware["gpus"], list) and "cpu_model" in run.hardware


def test_cli_json_rows_say_where_speeds_come_from(tiny_model: Path, quantlens_home: Path) -> None:
    from qtapp.core.results.store import ResultsStore

    with ResultsStore.open() as store:
        _speed_run(store, tiny_model.parent / "tiny-llama-Q8_0.gguf", 47.0, 700.0, tiny_model)
    out = subprocess.run(
        [sys.executable, "-m", "qtapp", "plan", str(tiny_model), "--fast", "--json", "--ngl", "0"]
        + ["--types", "Q8_0,Q4_K_M"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    rows = {r["type"]: r for r in json.loads(out.stdout)["rows"]}
    assert rows["Q8_0"]["speed_source"] == "measured"
    assert rows["Q8_0"]["measured_tg_tps"] == 47.0 and rows["Q8_0"]["measured_pp_tps"] == 700.0
    assert rows["Q4_K_M"]["speed_source"] == "calibrated"
    assert isinstance(rows["Q4_K_M"]["predicted_tg_tps"], float)
