"""Tailor (issue #13): groups, the knapsack, the scan job, the recipe and its exact size.

Real GGUF files (the tiny llama of qtapp.testing) and real llama.cpp throughout; the scan
runs once per module at a tiny size (9 groups x 2 types, 2 chunks of 64 tokens).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from qtapp.core.app.paths import app_paths
from qtapp.core.errors import QuantLensError
from qtapp.core.fit.devices import parse_gpu_spec
from qtapp.core.fit.plan import PlanInputs
from qtapp.core.gguf.model import read_model
from qtapp.core.jobs.events import Cancelled, Finished, Progress
from qtapp.core.jobs.job import Job
from qtapp.core.tailor import tailor as core
from qtapp.core.tailor.groups import bands, make_groups
from qtapp.core.tailor.measure import STANDARD
from qtapp.core.tailor.scan import Scan, ScanSettings, cached_scan, run_scan, scan_cost
from qtapp.core.tailor.solve import Option, solve

pytestmark = pytest.mark.timeout(180)

SETTINGS = ScanSettings(candidates=("Q4_K", "Q6_K"), bands=1, ctx=64, chunks=2, batch=128)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qtapp.testing.tiny import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("tailor") / "tiny-F16.gguf")


@pytest.fixture(scope="module")
def scanned(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scan]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUANTLENS_HOME", str(home))
        scan, terminal = run_scan(read_model(source), SETTINGS)
    assert isinstance(terminal, Finished), terminal
    assert scan is not None
    yield scan


# -- groups ------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_groups_cover_every_quantizable_tensor_once_and_patterns_catch_exactly_them(
    tmp_path: Path,
) -> None:
    from qtapp.testing.archs import write_tiny_qwen3moe

    m = read_model(write_tiny_qwen3moe(tmp_path / "moe.gguf"))
    groups = make_groups([(t.name, t.shape) for t in m.tensors], m.n_layer, 2)
    names = [t.name for t in m.tensors]
    grouped = [n for g in groups for n in g.tensors]
    assert len(grouped) == len(set(grouped))
    assert any(g.name.endswith("ffn_exps") for g in groups)
    assert "token_embd" in {g.name for g in groups}
    assert not any("norm" in n for n in grouped)
    for g in groups:
        assert [n for n in names if re.search(g.pattern, n)] == list(g.tensors), g.name


@pytest.mark.timeout(10)
def test_bands_are_contiguous_and_cover_all_layers() -> None:
    for n_layer, n in ((18, 3), (18, 2), (5, 3), (2, 4)):
        b = bands(n_layer, n)
        assert b[0][0] == 0 and b[-1][1] == n_layer - 1
        assert all(b[i][1] + 1 == b[i + 1][0] for i in range(len(b) - 1))


# -- the knapsack ------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_solver_matches_brute_force_and_never_exceeds_the_budget() -> None:
    rng = random.Random(3)
    for _ in range(30):
        options = {
            f"g{i}": sorted(
                [Option(f"T{k}", rng.randint(50, 1000), rng.random()) for k in range(3)],
                key=lambda o: o.bytes,
            )
            for i in range(4)
        }
        fixed = rng.randint(0, 100)
        budget = fixed + rng.randint(sum(min(o.bytes for o in v) for v in options.values()), 3000)
        sol = solve(options, fixed, budget, resolution=100_000)
        best = min(
            sum(o.delta for o in combo)
            for combo in itertools.product(*options.values())
            if fixed + sum(o.bytes for o in combo) <= budget
        )
        assert sol.bytes <= budget
        assert sol.predicted_kld == pytest.approx(best)


def test_residual_of_the_whole_model_is_spread_over_the_lowered_groups(scanned: Scan) -> None:
    fixed = core.corrected_deltas(scanned)
    for t, whole in scanned.kld_all.items():
        total = sum(fixed[g.name][t] for g in scanned.groups)
        raw = sum(max(0.0, scanned.delta[g.name][t]) for g in scanned.groups)
        # never below what was measured; up to the whole model's loss when that is larger
        assert total >= raw - 1e-12
        assert total == pytest.approx(max(raw, whole - scanned.reference_kld), rel=1e-9)


@pytest.mark.timeout(10)
def test_budget_below_the_smallest_mix_names_the_smallest_size() -> None:
    options = {"a": [Option("Q2_K", 2 * 2**20, 1.0)], "b": [Option("Q2_K", 3 * 2**20, 1.0)]}
    with pytest.raises(QuantLensError) as err:
        solve(options, 2**20, 5 * 2**20)
    assert "6.0 MiB" in err.value.message and str(6 * 2**20) in err.value.message


# -- the scan ----------------------------------------------------------------------------------
def test_scan_measures_every_group_and_type_and_leaves_no_files(
    scanned: Scan, source: Path
) -> None:
    assert {g.name for g in scanned.groups} >= {"token_embd", "output", "b0-3.ffn_down"}
    for g in scanned.groups:
        assert set(scanned.delta[g.name]) == {"Q4_K", "Q6_K"}
    # lowering the most tensors to the lowest type costs more than the high reference
    assert scanned.delta["b0-3.ffn_down"]["Q4_K"] > 0
    assert scanned.reference_kld > 0
    assert set(scanned.kld_all) == {"Q4_K", "Q6_K"}
    assert scanned.kld_all["Q4_K"] > scanned.reference_kld
    assert scanned.sizes["Q4_K"]["token_embd.weight"] < scanned.sizes["Q8_0"]["token_embd.weight"]
    assert not any(source.parent.glob("*.part"))


def test_scan_is_cached_and_a_changed_model_is_scanned_again(tmp_path: Path) -> None:
    from qtapp.testing.tiny import TinySpec, write_tiny_llama

    path = write_tiny_llama(tmp_path / "m-F16.gguf", TinySpec(n_layer=2))
    small = ScanSettings(candidates=("Q4_K",), bands=1, ctx=64, chunks=1, batch=64)
    m = read_model(path)
    cost = scan_cost(m, small)
    scan, _ = run_scan(m, small)
    assert scan is not None and not scan.cached
    assert cost.evals == scan.evals  # the cost shown before the start counts what is done
    again, _ = run_scan(m, small)
    assert again is not None and again.cached and again.delta == scan.delta
    work = app_paths().cache / "tailor" / "work"
    assert work.is_dir() and not any(work.iterdir())
    # same header, other weights: the cache must not answer
    write_tiny_llama(path, TinySpec(n_layer=2, seed=7))
    assert cached_scan(read_model(path), small) is None


def test_cancelled_scan_leaves_no_work_files_and_no_cache(source: Path, tmp_path: Path) -> None:
    m = read_model(source)
    jobs: list[Job] = []

    def on_event(ev: object) -> None:
        if isinstance(ev, Progress) and ev.detail.get("phase") == "scan":
            jobs[0].cancel()

    scan, terminal = run_scan(m, SETTINGS, on_event=on_event, on_start=jobs.append)
    assert scan is None and isinstance(terminal, Cancelled)
    work = app_paths().cache / "tailor" / "work"
    assert work.is_dir() and not any(work.iterdir())
    assert cached_scan(m, SETTINGS) is None


def test_quantized_source_is_refused_unless_requantize(tmp_path: Path) -> None:
    from qtapp.core.quantize.jobs import QuantizeOptions, quantize_spec, run_quantize
    from qtapp.testing.tiny import write_tiny_llama

    f16 = write_tiny_llama(tmp_path / "t-F16.gguf")
    terminal = run_quantize(quantize_spec(f16, "Q8_0", QuantizeOptions(out_dir=str(tmp_path))))
    assert isinstance(terminal, Finished)
    q8 = read_model(terminal.result["path"])
    with pytest.raises(QuantLensError) as err:
        run_scan(q8, SETTINGS)
    assert "already quantized" in err.value.message and "--requantize" in err.value.hint


# -- the splice ----------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_spliced_file_holds_the_lowered_tensors_bit_for_bit(source: Path, tmp_path: Path) -> None:
    from qtapp.core.gguf.reader import read_gguf
    from qtapp.core.jobs.engine.tailor_scan import _quantize_all, write_spliced

    hi, lo, out = tmp_path / "hi.gguf", tmp_path / "lo.gguf", tmp_path / "mix.gguf"
    _quantize_all(str(source), hi, "Q8_0", "Q8_0", {})
    _quantize_all(str(source), lo, "Q8_0", "Q4_K", {})
    lowered = {"blk.1.ffn_down.weight", "token_embd.weight"}
    write_spliced(read_gguf(hi), read_gguf(lo), lowered, out)
    mix, h, low = ({t.name: t for t in GGUFReader(p).tensors} for p in (out, hi, lo))
    for name, t in mix.items():
        ref = low[name] if name in lowered else h[name]
        assert t.tensor_type == ref.tensor_type, name
        assert np.array_equal(np.asarray(t.data), np.asarray(ref.data)), name
    assert read_model(out).n_layer == read_model(source).n_layer


# -- recipe, exact size, plan ------------------------------------------------------------------
def test_tailored_recipe_fits_its_budget_and_llama_cpp_agrees_on_its_size(
    scanned: Scan, source: Path, tmp_path: Path
) -> None:
    from qtapp.core.fit.recipes_store import load_user_recipes
    from qtapp.core.quantize.jobs import QuantizeOptions, quantize_spec, run_quantize

    m = read_model(source)
    low, high = core.smallest_mix(scanned), scanned.sizes["Q8_0"]
    budget = (low + sum(high.values())) // 2
    t = core.tailor_to_budget(scanned, budget, "tiny-tailored")
    assert low <= t.bytes <= budget
    assert set(t.solution.choice.values()) <= {"Q4_K", "Q6_K", "Q8_0"}
    assert core.confirm_size(m, t) == t.bytes  # llama.cpp's dry run
    core.save(t)
    assert "tiny-tailored" in load_user_recipes()
    options = QuantizeOptions(out_dir=str(tmp_path), user_recipes=[t.recipe.to_dict()])
    terminal = run_quantize(quantize_spec(source, "tiny-tailored", options))
    assert isinstance(terminal, Finished)
    assert terminal.result["tensor_bytes"] == t.bytes
    written = {x.name: x.tensor_type.name for x in GGUFReader(terminal.result["path"]).tensors}
    for g in scanned.groups:
        for n in g.tensors:
            assert written[n] == scanned.types[t.solution.choice[g.name]][n]
    with pytest.raises(QuantLensError) as err:
        core.tailor_to_budget(scanned, low - 1, "too-small")
    assert f"{low} bytes" in err.value.message


def test_tailoring_to_gpus_gives_a_plan_that_fits(scanned: Scan, source: Path) -> None:
    m = read_model(source)
    inp = PlanInputs(m, gpus=parse_gpu_spec("1x1GiB"), margin=0)
    t = core.tailor_to_plan(scanned, inp, "tiny-gpu")
    assert t.row is not None and t.row.verdict == "fits"
    with pytest.raises(QuantLensError) as err:
        core.tailor_to_plan(scanned, PlanInputs(m, gpus=parse_gpu_spec("1x100MiB"), margin=0), "x")
    assert "does not fit" in err.value.message


def test_cli_prints_the_recipe_and_refuses_a_too_small_budget(
    scanned: Scan, source: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    args = [sys.executable, "-m", "qtapp", "tailor", str(source), "--out", str(tmp_path / "o")]
    args += ["--bands", "1", "--candidates", "Q4_K,Q6_K", "--scan-ctx", "64", "--scan-chunks"]
    args += ["2", "--json"]
    low = core.smallest_mix(scanned)
    bad = subprocess.run([*args, "--budget", str(low - 1)], capture_output=True, text=True)
    assert bad.returncode != 0
    assert "below the smallest possible mix" in bad.stderr and f"{low} bytes" in bad.stderr
    ok = subprocess.run(
        [*args, "--budget", str(low + 4096), "--no-measure"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert out["bytes"] <= low + 4096
    assert out["tensor_type_args"][0] == "--tensor-type"
    assert Path(out["recipe_file"]).is_file()
    gpus = subprocess.run(
        [*args, "--gpus", "1x3GiB", "--ctx", "256", "--no-measure"], capture_output=True, text=True
    )
    assert gpus.returncode == 0, gpus.stderr
    plan = json.loads(gpus.stdout)["plan"]
    assert plan["verdict"] == "fits"
    assert all(d["total_bytes"] <= d["budget"] for d in plan["devices"] if d["device"] != "CPU")
    shutil.rmtree(tmp_path / "o", ignore_errors=True)


@pytest.mark.timeout(240)
def test_cli_measures_the_recipe_and_the_standard_types_around_it(
    scanned: Scan, source: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    out_dir = tmp_path / "o"
    low = core.smallest_mix(scanned)
    args = [sys.executable, "-m", "qtapp", "tailor", str(source), "--out", str(out_dir)]
    args += ["--bands", "1", "--candidates", "Q4_K,Q6_K", "--scan-ctx", "64", "--scan-chunks"]
    args += ["2", "--eval-chunks", "1", "--budget", str(low + 65536), "--json"]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    measured = out["measured"]
    assert measured["kld_mean"] >= 0 and measured["kld_p99"] >= measured["kld_median"]
    assert Path(measured["path"]).is_file()
    assert out["nearby"], "the standard types of nearby size are measured too"
    for row in out["nearby"]:
        assert row["target"] in STANDARD
        assert "kld_mean" in row and Path(row["path"]).is_file()
    assert not list(out_dir.glob("*.part"))


@pytest.mark.timeout(10)
def test_group_names_by_class_and_band() -> None:
    from qtapp.core.tailor.groups import group_name

    cases = {
        "blk.0.ffn_up_exps.weight": "b0-1.ffn_exps",
        "blk.7.ffn_down_shexp.weight": "b2-15.ffn_shexp",
        "blk.17.attn_output.weight": "b16-17.attn_output",
        "blk.3.ffn_gate.weight": "b2-15.ffn_gate",
        "token_embd.weight": "token_embd",
        "output.weight": "output",
    }
    for name, group in cases.items():
        assert group_name(name, 18, 3) == group


@pytest.mark.timeout(120)
def test_moe_scan_gives_the_experts_their_own_group_and_an_exact_recipe(tmp_path: Path) -> None:
    from qtapp.testing.archs import write_tiny_qwen3moe
    from qtapp.testing.filled import fill_random

    m = read_model(fill_random(write_tiny_qwen3moe(tmp_path / "moe-F16.gguf")))
    small = ScanSettings(candidates=("Q4_K",), bands=1, ctx=64, chunks=1, batch=64)
    scan, terminal = run_scan(m, small)
    assert isinstance(terminal, Finished) and scan is not None
    assert "Q4_K" in scan.delta["b0-3.ffn_exps"]
    budget = (core.smallest_mix(scan) + sum(scan.sizes["Q8_0"].values())) // 2
    t = core.tailor_to_budget(scan, budget, "moe-tailored")
    assert t.bytes <= budget and core.confirm_size(m, t) == t.bytes
