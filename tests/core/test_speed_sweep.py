"""Speed against context depth: llama-bench's -d protocol, the job, the CLI, the planner's depth
term and measured curves replacing predictions."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.metrics import bench_stats
from qtapp.core.evaluate.runs import EvalRecorder
from qtapp.core.jobs.events import Cancelled, Event, Point
from qtapp.core.jobs.job import Job, JobSpec


# -- llama-bench's protocol, on a fake session that records every call -------------------------
class FakeSession:
    """Just enough of LlamaSession: a one-sequence memory of positions, saved states."""

    n_vocab = 1000
    add_bos = True
    bos = 2
    n_gpu_layers = 0
    n_cpu_moe = 0
    threads = 2

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.cells: list[int] = []
        self.n_batch = 0
        self.abort_in_decode = True

    def reopen(self, n_ctx: int, n_batch: int, n_ubatch: int, n_seq: int) -> None:
        self.n_batch = min(n_batch, n_ctx)
        self.cells = []
        self.log.append(("reopen", n_ctx, n_batch, n_ubatch))

    def clear_memory(self, data: bool = True) -> None:
        self.cells = []
        self.log.append(("clear", data))

    def pos_max(self) -> int:
        return max(self.cells) if self.cells else -1

    def decode(self, toks: np.ndarray, pos: np.ndarray, seq: np.ndarray, out: np.ndarray) -> int:
        assert len(toks) <= self.n_batch and out[-1] == 1 and out.sum() == 1
        self.cells += [int(p) for p in pos]
        self.log.append(("decode", int(pos[0]), len(toks), int(toks[0])))
        return 1

    def synchronize(self) -> None:
        pass

    def save_seq(self) -> list[int]:
        self.log.append(("save", len(self.cells)))
        return list(self.cells)

    def restore_seq(self, buf: list[int]) -> bool:
        self.cells = list(buf)
        self.log.append(("restore", len(buf)))
        return True


def test_depth_protocol_is_llama_bench_s() -> None:
    from qtapp.core.jobs.engine.bench_speed import run_speed

    sess = FakeSession()
    events: list[Event] = []
    params = {"reps": 2, "n_prompt": 64, "n_gen": 3, "depths": [0, 100]}
    out = run_speed(sess, params, events.append)  # type: ignore[arg-type]
    log = sess.log
    # depth 0: pp then tg, each in a fresh context of n + depth tokens, warm-up first
    assert log[0] == ("reopen", 64, 2048, 512) and log[1] == ("clear", False)
    assert log[2] == ("decode", 0, 64, 2)  # warm-up prompt: BOS first, at position 0
    assert log[3:5] == [("clear", False), ("decode", 0, 64, 2)]
    i = log.index(("reopen", 3, 2048, 512))
    assert log[i + 2][:3] == ("decode", 0, 1)  # the tg warm-up: one token
    # depth 100, pp: the fill is computed once, saved, then restored; runs start after it
    j = log.index(("reopen", 164, 2048, 512))
    pp = log[j:]
    assert pp[2] == ("decode", 0, 64, 2)  # warm-up on the empty memory
    assert pp[3:7] == [
        ("clear", False),
        ("decode", 0, 100, 2),
        ("save", 100),
        ("decode", 100, 64, 2),
    ]
    assert pp[7:9] == [("clear", False), ("restore", 100)] and pp[9] == ("decode", 100, 64, 2)
    # tg at the same depth restores what pp filled: no second fill
    k = log.index(("reopen", 103, 2048, 512))
    tg = log[k:]
    assert ("decode", 0, 100, 2) not in tg and tg.count(("restore", 100)) == 2
    assert ("decode", 100, 1, 2) in tg  # the first generated token is BOS, after the fill
    pts = [e for e in events if isinstance(e, Point)]
    assert [(p.series, p.x) for p in pts if p.series.endswith("_depth")] == [
        ("pp_depth", 0), ("tg_depth", 0), ("pp_depth", 100), ("tg_depth", 100),
    ]  # fmt: skip
    assert [p.x for p in pts if p.series == "tg_tps"] == [1, 2]  # per run, depth 0 only
    for p in pts:
        if p.series.endswith("_depth"):
            mean, sd = bench_stats(p.extra["n_tokens"], p.extra["samples_ns"])
            assert p.y == mean and p.err == sd and len(p.extra["samples_ns"]) == 2
    assert [(q["depth"], q["test"]) for q in out["points"]] == [
        (0, "pp"), (0, "tg"), (100, "pp"), (100, "tg"),
    ]  # fmt: skip
    assert out["tg_tps"] == next(p.y for p in pts if p.series == "tg_depth")


# -- the job and the CLI, on the tiny model ----------------------------------------------------
@pytest.mark.timeout(180)
def test_sweep_job_streams_each_depth_and_cancel_keeps_them(tiny_model: Path) -> None:
    params = {"model": str(tiny_model), "depths": [0, 256, 1024, 1536], "reps": 2}
    params.update(n_prompt=64, n_gen=8, threads=1)
    rec = EvalRecorder(tiny_model, params)
    job = Job(JobSpec("speed_sweep", params))
    seen: list[float] = []
    for ev in job.events():
        rec.add(ev)
        if isinstance(ev, Point) and ev.series == "tg_depth":
            seen.append(ev.x)
            if ev.x == 256:
                job.cancel(grace=5)
    assert isinstance(ev, Cancelled)
    assert seen[:2] == [0, 256] and rec.result["partial"] is True
    assert rec.state == "partial"
    metrics = rec.speed_metrics()
    from qtapp.core.fit.speed_curve import SpeedCurve

    curve = SpeedCurve.from_json(metrics["speed_curve"])
    assert [p.x for p in curve.points][:2] == [0, 256]
    assert curve.at("tg", 0) == pytest.approx(rec.series["tg_depth"].ys[0], rel=1e-3)
    # llama.cpp's info and debug lines (model load, every context) stay out of the parent's
    # stderr reader, as llama-bench prints none without -v
    # (thousands of lines before: the tail of 40 was full; warnings and errors still pass)
    assert len(job.stderr_tail()) < 10


@pytest.mark.timeout(180)
def test_cli_one_json_line_per_point_and_stored(tiny_model: Path, quantlens_home: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "qtapp", "speed", str(tiny_model), "--depth", "0,128"]
        + ["--reps", "2", "--threads", "2", "--n-prompt", "32", "--n-gen", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [(r["test"], r["n_depth"]) for r in lines] == [
        ("pp32", 0), ("tg4", 0), ("pp32", 128), ("tg4", 128),
    ]  # fmt: skip
    for r in lines:
        assert len(r["samples_ns"]) == 2 and r["avg_ts"] > 0
        assert r["avg_ts"] == pytest.approx(sum(r["samples_ts"]) / 2)
        assert r["predicted_ts"] > 0 and math.isfinite(r["predicted_error"])
    from qtapp.core.results.store import ResultsStore

    run = ResultsStore.open().list_runs(kind="eval")[0]
    assert run.state == "finished" and run.metrics["depth_max"] == 128
    assert run.metrics["tg_tps"] == pytest.approx(lines[1]["avg_ts"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--depth", "0,4096"], "beyond tiny-llama-F16.gguf's trained context"),
        (["--depth", "0,x"], "Cannot read the depth 'x'"),
        (["--depth", "-5"], "The depth -5 is out of range"),
        (["--reps", "0"], "--reps 0 is out of range"),
        (["--n-cpu-moe", "2"], "not a mixture-of-experts model"),
        (["--ngl", "2", "--n-cpu-moe", "2"], "not allowed with argument"),
    ],
)
def test_cli_bad_input_is_one_line_before_anything_starts(
    tiny_model: Path, quantlens_home: Path, args: list[str], message: str
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "qtapp", "speed", str(tiny_model), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert out.stdout.strip() == ""
    from qtapp.core.results.store import ResultsStore

    assert ResultsStore.open().list_runs(kind="eval") == []


def test_a_depth_the_plan_says_does_not_fit_is_refused(tiny_model: Path) -> None:
    from types import SimpleNamespace

    from qtapp.core.evaluate.speed_sweep import check_sweep

    tiny_host = SimpleNamespace(gpus=(), host=SimpleNamespace(ram_total_bytes=8 << 20))
    with pytest.raises(QuantLensError, match=r"Depth 1,024 does not fit: .* CPU needs"):
        check_sweep(tiny_model, [0, 1024], report=tiny_host)
    assert check_sweep(tiny_model, [0, 1024]).row.verdict != "no"  # this machine's RAM


# -- the planner: a depth term, and measured curves replacing it -------------------------------
def test_depth_term_reads_the_cache_and_caps_sliding_windows(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qtapp.core.fit.kv_model import ContextSettings, row_bytes
    from qtapp.core.fit.speed import depth_cost
    from qtapp.core.gguf.model import read_model

    m = read_model(tiny_model)
    cs = ContextSettings(n_ctx=2048)
    cell = sum(
        row_bytes("f16", m.head_dim_k * k) + row_bytes("f16", m.head_dim_v * k) for k in m.n_head_kv
    )
    per_cell = sum(
        2 * h * (m.head_dim_k + m.head_dim_v)
        for h, k in zip(m.n_head, m.n_head_kv, strict=True)
        if k
    )
    assert depth_cost(m, cs, 0) == (0.0, 0.0, 0.0)
    kv, tg_flops, pp_flops = depth_cost(m, cs, 1000)
    # a generated token reads every cached K/V row once and every query head works on it
    assert kv == cell * 1000 and tg_flops == per_cell * 1000
    # a prompt token attends to the cache and, on average, to half its ubatch already there
    assert pp_flops == tg_flops
    assert depth_cost(m, cs, 2000)[:2] == (2 * kv, 2 * tg_flops)
    m.memo.clear()
    # every layer a sliding window of 128 tokens: the cost stops growing past it
    monkeypatch.setattr(type(m), "n_swa", property(lambda _self: 128))
    monkeypatch.setattr(type(m), "swa_layers", property(lambda self: [True] * self.n_layer))
    assert depth_cost(m, cs, 1000) == depth_cost(m, cs, 4000)
    assert depth_cost(m, cs, 1000)[:2] == (cell * 128, per_cell * 128)


def _sweep_run(store: Any, path: Path, curve: list[list[Any]], base: Path, **metrics: Any) -> None:
    from types import SimpleNamespace

    from qtapp.core.fit.measured_speed import hardware_record, usable_cores

    hw = metrics.pop("hardware", None) or hardware_record(SimpleNamespace(gpus=()))
    m = {"speed_curve": json.dumps(curve), "threads": usable_cores(), "n_gpu_layers": 0}
    m.update(metrics)
    run = store.begin_run("eval", path, path.name, hardware=hw, settings={"model": str(path)})
    store.finish_run(run, "finished", metrics=m)


def test_measured_depth_curve_replaces_the_prediction_at_the_context(tiny_model: Path) -> None:
    from qtapp.core.fit.devices import GIB, Device
    from qtapp.core.fit.kv_model import ContextSettings
    from qtapp.core.fit.measured_speed import measured_speeds, speed_tooltip
    from qtapp.core.fit.plan import PlanInputs, make_plan
    from qtapp.core.gguf.model import read_model
    from qtapp.core.results.store import ResultsStore

    m = read_model(tiny_model)
    host = Device("CPU", 64 * GIB, 64 * GIB, 50e9, False)
    q8 = tiny_model.parent / "tiny-llama-Q8_0.gguf"
    curve = [[0, 700.0, 5.0, 50.0, 1.0], [1024, 500.0, 5.0, 40.0, 1.0]]
    with ResultsStore.open() as store:
        _sweep_run(store, q8, curve, tiny_model, tg_tps=50.0, pp_tps=700.0)
    speeds = measured_speeds(m)

    def row(n_ctx: int) -> Any:
        plan = make_plan(
            PlanInputs(m, ContextSettings(n_ctx=n_ctx), [], host, speeds=speeds), ["Q8_0", "Q4_K_M"]
        )
        return plan.row("Q8_0"), plan.row("Q4_K_M")

    at, q4 = row(1024)  # a measured depth: exactly the measurement
    assert at.speed_source == "measured" and at.tg_tps == 40.0 and at.pp_tps == 500.0
    assert at.measured_how["tg"] == "measured at depth 1,024"
    assert "tg128 @ depth 1,024" in speed_tooltip(at, "tg") and "off)" in speed_tooltip(at, "tg")
    # the other type is calibrated at depth 0 and predicted at its depth
    assert q4.speed_source == "calibrated"
    assert q4.tg_tps == pytest.approx(q4.predicted_at_depth("tg") * 50.0 / at.predicted_tg_tps)
    mid, _q4 = row(512)  # between two: time per token interpolated
    assert mid.tg_tps == pytest.approx(1 / (0.5 / 50 + 0.5 / 40))
    assert "interpolated between measured depths 0 and 1,024" in mid.measured_how["tg"]
    far, _q4 = row(2048)  # beyond: the deepest point, scaled by the predicted cost of depth
    scale = far.predict_at(2048)[0] / far.predict_at(1024)[0]
    assert far.tg_tps == pytest.approx(40.0 * scale) and scale < 1
    assert "scaled to depth 2,048" in far.measured_how["tg"]
    assert far.to_dict()["measured_tg_depth_tps"] == pytest.approx(40.0 * scale, rel=1e-3)


def test_offload_curve_replaces_partial_offload_rows_on_the_same_gpu(tiny_model: Path) -> None:
    from qtapp.core.fit.devices import GIB, Device
    from qtapp.core.fit.kv_model import ContextSettings
    from qtapp.core.fit.measured_speed import hardware_record, measured_speeds
    from qtapp.core.fit.plan import PlanInputs, make_plan
    from qtapp.core.gguf.model import read_model
    from qtapp.core.results.store import ResultsStore

    m = read_model(tiny_model)
    host = Device("CPU", 64 * GIB, 64 * GIB, 50e9, False)
    h200 = [Device("CUDA0", 140 * GIB, 140 * GIB, 4.8e12, True, "GPU 0: NVIDIA H200")]
    hw = {**hardware_record(), "gpus": ["NVIDIA H200"]}
    offload = [[0, 300.0, 1.0, 30.0, 1.0], [2, 600.0, 1.0, 60.0, 1.0], [4, 900.0, 1.0, 90.0, 1.0]]
    q8 = tiny_model.parent / "tiny-llama-Q8_0.gguf"
    with ResultsStore.open() as store:
        _sweep_run(
            store, q8, [], tiny_model, hardware=hw, offload_curve=json.dumps(offload),
            offload_axis="ngl", offload_depth=0,
        )  # fmt: skip
    speeds = measured_speeds(m)
    assert sorted(s.placement for s in speeds.measurements) == ["cpu", "ngl2", "ngl4"]
    cs = ContextSettings(n_ctx=256)
    partial = make_plan(PlanInputs(m, cs, h200, host, ngl=2, speeds=speeds), ["Q8_0"])
    r = partial.row("Q8_0")
    assert r is not None and r.n_gpu_layers == 2 and r.speed_source == "measured"
    assert r.measured is not None and r.measured.tg_tps == 60.0
    assert r.tg_tps == pytest.approx(60.0 * r.predict_at(256)[0] / r.predict_at(0)[0])
    other = make_plan(PlanInputs(m, cs, h200, host, ngl=3, speeds=speeds), ["Q8_0"])
    assert other.row("Q8_0").speed_source == "predicted"  # type: ignore[union-attr]


def test_offload_sweep_on_a_cpu_build_says_why(tiny_model: Path) -> None:
    from qtapp.core.jobs.events import Failed

    params = {"model": str(tiny_model), "axis": "ngl", "values": [0, 2], "reps": 1}
    last, _events = Job(JobSpec("offload_sweep", params)).run()
    assert isinstance(last, Failed) and "cannot offload to a GPU" in last.message
    assert "CUDA build" in last.hint


@pytest.mark.timeout(180)
def test_eval_cli_speed_at_depths(tiny_model: Path, quantlens_home: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "qtapp", "eval", str(tiny_model), "--ctx", "64", "--chunks", "1"]
        + ["--speed", "--reps", "1", "--threads", "2", "--depth", "0,64", "--json"],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines()]
    depth_rows = [(r["speed"], r["depth"]) for r in rows if "depth" in r]
    assert depth_rows == [("pp", 0), ("tg", 0), ("pp", 64), ("tg", 64)]
    bad = subprocess.run(
        [sys.executable, "-m", "qtapp", "eval", str(tiny_model), "--speed", "--depth", "9999"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and "trained context" in bad.stderr
