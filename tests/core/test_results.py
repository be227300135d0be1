"""The results store, its exports, the Pareto frontier, and recovery after a crash."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from qtapp.core.errors import QuantLensError
from qtapp.core.gguf.fingerprint import display_name, model_info
from qtapp.core.results.comparison import GIB, build_rows, frontier, parse_budget, recommend
from qtapp.core.results.pareto import pareto_front
from qtapp.core.results.recovery import clean_partial_outputs, recover_at_start
from qtapp.core.results.report import export, to_csv, to_html, to_json, to_markdown
from qtapp.core.results.store import SCHEMA_VERSION, ResultsStore
from tests.results_factory import fill_store

FIXTURES = Path(__file__).parents[1] / "fixtures"
REPO = Path(__file__).parents[2]


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    with ResultsStore.open(tmp_path / "results.sqlite3") as s:
        yield s


# -- the store ------------------------------------------------------------------------------------
def test_metrics_and_curves_round_trip(store: ResultsStore, tiny_model: Path) -> None:
    run = store.begin_run(
        "eval",
        tiny_model,
        "F16",
        hardware={"gpus": [{"name": "H200"}]},
        settings={"ctx": 512, "chunks": 4},
    )
    store.add_points(run, "ppl", [512, 1024], [20.5, 19.25], [0.5, 0.25])
    store.add_points(run, "ppl", [1536], [18.0])  # a later call without errors
    store.add_points(run, "kld", np.arange(1000.0), np.linspace(0, 1, 1000))
    assert store.get_run(run).state == "running"
    metrics = {"ppl": 18.0, "ppl_err": 0.25, "kld_mean": 0.0123, "nested": {"p99": [1, 2]}}
    store.finish_run(run, "finished", metrics, message="done")

    got = store.get_run(run)
    assert got.state == "finished" and got.message == "done" and got.finished is not None
    assert got.metrics == metrics
    assert got.settings == {"ctx": 512, "chunks": 4}
    assert got.hardware == {"gpus": [{"name": "H200"}]}
    info = model_info(tiny_model)
    assert got.model_fingerprint == info.fingerprint and got.model_bytes == info.total_bytes
    assert got.model_name == "tiny-llama" and got.bpw == pytest.approx(16.0, abs=0.1)
    assert got.llama_version.startswith("llama-cpp-python")
    assert [r.id for r in store.list_runs(model=info.fingerprint)] == [run]

    curves = store.curves(run)
    assert curves["ppl"].xs.tolist() == [512, 1024, 1536]
    assert curves["ppl"].ys.tolist() == [20.5, 19.25, 18.0]
    assert curves["ppl"].errs[:2].tolist() == [0.5, 0.25] and np.isnan(curves["ppl"].errs[2])
    assert curves["kld"].errs is None and len(curves["kld"]) == 1000
    assert curves["kld"].ys[-1] == pytest.approx(1.0)
    # finishing compacts the chunks: one row per series
    rows = store._db.execute("SELECT COUNT(*) FROM curve_chunks WHERE run_id=?", (run,)).fetchone()
    assert rows[0] == 2


def test_list_filter_rename_annotate_delete(store: ResultsStore) -> None:
    ids = fill_store(store, points=8)
    assert len(store.list_runs()) == len(ids) + 2  # plus one plan run per model
    gemma_small = store.list_runs(model="270m", kind="eval")
    assert {r.model_name for r in gemma_small} == {"Gemma 3 270m"} and len(gemma_small) == 8

    target = gemma_small[3].id
    store.rename_run(target, "Q5_K_M (imatrix)")
    store.annotate_run(target, "best for 8 GB")
    assert store.get_run(target).label == "Q5_K_M (imatrix)"
    assert store.get_run(target).note == "best for 8 GB"
    with pytest.raises(ValueError):
        store.rename_run(target, "  ")

    store.delete_run(target)
    with pytest.raises(KeyError):
        store.get_run(target)
    assert store.curves(target) == {}  # the curves went with it
    with pytest.raises(ValueError):
        store.finish_run(ids[0], "done")  # not a state


def test_a_missing_model_file_is_still_recorded(store: ResultsStore) -> None:
    run = store.begin_run("plan", "/nowhere/Qwen3-8B-Q4_K_M.gguf", "plan")
    got = store.get_run(run)
    assert got.model_fingerprint == "" and got.model_bytes is None
    assert got.model_name == "Qwen3-8B"


def test_fingerprint_follows_content_not_path(tmp_path: Path, tiny_model: Path) -> None:
    copy = tmp_path / "renamed.gguf"
    shutil.copy(tiny_model, copy)
    assert model_info(copy).fingerprint == model_info(tiny_model).fingerprint
    with copy.open("r+b") as fh:  # same size, one metadata byte changed
        fh.seek(40)
        byte = fh.read(1)
        fh.seek(40)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert model_info(copy).fingerprint != model_info(tiny_model).fingerprint


def test_split_shards_count_together(tmp_path: Path, tiny_model: Path) -> None:
    first = tmp_path / "big-model-Q4_K_M-00001-of-00002.gguf"
    shutil.copy(tiny_model, first)
    (tmp_path / "big-model-Q4_K_M-00002-of-00002.gguf").write_bytes(b"GGUF" + bytes(1000))
    info = model_info(first)
    assert info.shards == 2 and info.total_bytes == tiny_model.stat().st_size + 1004
    assert display_name(first) == "big-model"


def test_not_a_gguf_still_gets_a_fingerprint(tmp_path: Path) -> None:
    junk = tmp_path / "notes.gguf"
    junk.write_text("hello")
    info = model_info(junk)
    assert len(info.fingerprint) == 32 and info.n_params == 0 and info.bpw is None


# -- schema versions and damage -------------------------------------------------------------------
def test_migration_from_version_1(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    shutil.copy(FIXTURES / "results_v1.sqlite3", db)
    with ResultsStore.open(db) as store:
        assert store.schema_version() == SCHEMA_VERSION == 2
        runs = store.list_runs()
        assert [r.label for r in runs] == ["F16", "Q4_K_M", "Q2_K"]
        assert runs[1].metrics["kld_mean"] == pytest.approx(0.029)
        assert runs[1].model_name == "gemma-3-270m-it"
        assert runs[2].state == "interrupted"  # left running by the old release
        curve = store.curves(runs[0].id)["ppl"]
        assert curve.xs.tolist() == [512, 1024, 1536, 2048, 2560]
        assert curve.ys[0] == pytest.approx(16.62)
        assert curve.errs is not None and curve.errs.tolist() == [0.5] * 5
        tables = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master")}
        assert "points" not in tables
        new = store.begin_run("eval", "/m/x-Q8_0.gguf", "Q8_0")  # and it works as a v2 store
        store.finish_run(new, "finished", {"ppl": 1.0})
    with ResultsStore.open(db) as again:  # reopening does not migrate twice
        assert again.schema_version() == 2 and len(again.list_runs()) == 4


def test_a_damaged_database_is_set_aside(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite3"
    db.write_bytes(b"this is not sqlite at all" * 100)
    with ResultsStore.open(db) as store:
        assert store.recovered_from is not None and store.recovered_from.exists()
        assert store.list_runs() == []


def test_an_unusable_location_gets_a_clear_message(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(QuantLensError, match="Cannot open the results database") as err:
        ResultsStore.open(blocker / "results.sqlite3")
    assert "QUANTLENS_HOME" in err.value.hint


def test_a_newer_database_is_refused_with_a_hint(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite3"
    ResultsStore.open(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(QuantLensError, match="newer QuantLens") as err:
        ResultsStore.open(db)
    assert err.value.hint


# -- comparison, Pareto, budgets -----------------------------------------------------------------
def test_pareto_front_on_a_hand_made_set() -> None:
    points = [
        (1.0, 0.50, "a"),  # smallest: on the front
        (2.0, 0.30, "b"),  # on
        (2.0, 0.40, "b-worse"),  # same size, worse: off
        (2.5, 0.35, "c"),  # bigger and worse than b: off
        (3.0, 0.10, "d"),  # on
        (3.0, 0.10, "d-copy"),  # identical to d: only the first is kept
        (4.0, 0.10, "e"),  # bigger, not better: off
        (5.0, 0.01, "f"),  # on
        (6.0, float("nan"), "g"),  # unmeasured: ignored
    ]
    assert pareto_front(points) == ["a", "b", "d", "f"]
    assert pareto_front([]) == []


@pytest.mark.parametrize(
    ("text", "n", "per_gib"),
    [
        ("2x48GiB", 2, 48),
        ("24 GB", 1, 24e9 / GIB),
        ("80G", 1, 80),
        ("1 x 512MiB", 1, 0.5),
        ("2×24gib", 2, 24),
    ],
)
def test_parse_budget(text: str, n: int, per_gib: float) -> None:
    b = parse_budget(text)
    assert b.n_gpus == n and b.per_gpu_bytes / GIB == pytest.approx(per_gib)
    assert b.usable_bytes == max(0, n * (b.per_gpu_bytes - GIB))  # 1 GiB margin per GPU


@pytest.mark.parametrize("text", ["", "lots", "2x", "0x24GiB", "24 parsecs"])
def test_parse_budget_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="2x48GiB"):
        parse_budget(text)


def test_rows_delta_ppl_predicted_speed_fits_and_recommendation(store: ResultsStore) -> None:
    fill_store(store, points=4)
    runs = store.list_runs()
    rows = build_rows(runs, [parse_budget("1.5GiB")])  # 0.5 GiB usable
    small = {r.label: r for r in rows if r.model == "Gemma 3 270m" and r.kind == "eval"}
    assert small["F16"].dppl_pct == pytest.approx(0.0)
    expected = (small["Q2_K"].ppl / small["F16"].ppl - 1) * 100
    assert small["Q2_K"].dppl_pct == pytest.approx(expected) and expected > 20
    assert small["Q8_0"].speed_source == "measured"
    assert small["Q6_K"].speed_source == "predicted" and small["Q6_K"].tg_tps > 0
    assert small["Q8_0"].fits == "1x1.5GiB" and small["Q8_0"].need_is_estimate
    big = {r.label: r for r in rows if r.model == "Gemma 3 1b" and r.kind == "eval"}
    assert big["F16"].fits == ""

    front = frontier([r for r in rows if r.model == "Gemma 3 1b"], "kld")
    assert [r.label for r in front] == [
        "Q2_K",
        "Q3_K_M",
        "Q4_K_M",
        "Q4_K_XL",
        "Q5_K_M",
        "Q6_K",
        "Q8_0",
        "F16",
    ]
    recs = {r.model: r for r in recommend(rows, "kld", parse_budget("1.5GiB"))}
    assert recs["Gemma 3 1b"].row.label == "Q3_K_M"  # the best that fits in 0.5 GiB
    assert recs["Gemma 3 270m"].row.label == "F16"
    none_fit = recommend(rows, "kld", parse_budget("1.2GiB"))
    assert all(r.row is None for r in none_fit if r.model == "Gemma 3 1b")
    assert "nothing measured fits" in none_fit[0].text


# -- exports ------------------------------------------------------------------------------------
def test_exports_parse_back(store: ResultsStore) -> None:
    fill_store(store, points=4)
    runs = store.list_runs()
    rows = build_rows(runs, [parse_budget("2x48GiB")])

    back = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert len(back) == len(rows)
    assert [int(r["run_id"]) for r in back] == [r.run_id for r in rows]
    q4 = next(r for r in rows if r.label == "Q4_K_M")
    q4_back = next(b for b in back if int(b["run_id"]) == q4.run_id)
    assert float(q4_back["kld_mean"]) == pytest.approx(q4.kld_mean)
    assert float(q4_back["size_gib"]) == pytest.approx(q4.size_gib)

    data = json.loads(to_json(rows, runs))
    assert len(data["runs"]) == len(rows)
    item = next(r for r in data["runs"] if r["run_id"] == q4.run_id)
    assert item["metrics"]["kld_mean"] == pytest.approx(q4.kld_mean)
    assert item["settings"] == {"ctx": 512, "chunks": 40}
    assert data["environments"][0]["hardware"]["gpus"][0]["name"] == "NVIDIA H200"

    md = to_markdown([r for r in rows if r.kind == "eval"]).splitlines()
    assert md[0].startswith("| Model | Quant / recipe |") and set(md[1]) <= set("|-:")
    table = [line for line in md if line.startswith("|")]
    assert len(table) == 2 + 16 and "Q4_K_M" in "".join(md)
    assert all(line.count("|") == md[0].count("|") for line in table)  # no broken row
    assert md[-1].startswith("\\* predicted")  # the predicted speeds are marked and explained

    with pytest.raises(ValueError):
        export(rows, "xls")


def test_html_report_contains_its_charts_and_environment(store: ResultsStore) -> None:
    fill_store(store, points=4)
    runs = store.list_runs()
    rows = build_rows(runs)
    html = to_html(rows, runs, metric="kld", budget=parse_budget("1.5GiB"))
    assert html.count("<svg") == 2 and html.count("</svg>") == 2
    assert html.count('class="point"') >= 16  # every evaluated quant drawn
    assert 'class="vline"' in html and "budget 1x1.5GiB" in html
    assert "NVIDIA H200" in html and "driver 570.124.06" in html
    assert "llama-cpp-python 0.3.36" in html
    assert "<script" not in html and "http" not in html.split("xmlns")[0]  # self-contained


def test_cli_results_lists_exports_and_edits(
    store: ResultsStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qtapp.__main__ import main

    with ResultsStore.open() as default:  # the CLI uses the default location
        ids = fill_store(default, points=4)
    assert main(["results", "--model", "270m", "--kind", "eval"]) == 0
    out = capsys.readouterr().out
    assert "Q4_K_M" in out and "Gemma 3 1b" not in out

    assert main(["results", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["runs"]) == len(ids) + 2

    target = tmp_path / "r.md"
    assert main(["results", "--format", "md", "--out", str(target)]) == 0
    assert target.read_text().startswith("| Model")

    assert main(["results", "--rename", str(ids[0]), "F16 base"]) == 0
    assert main(["results", "--delete", str(ids[1])]) == 0
    assert main(["results", "--delete", "99999"]) == 1
    assert "no run with id 99999" in capsys.readouterr().err
    assert main(["results", "--budget", "lots"]) == 2
    with ResultsStore.open() as default:
        assert default.get_run(ids[0]).label == "F16 base"
        assert len(default.list_runs()) == len(ids) + 1


# -- crash safety --------------------------------------------------------------------------------
def test_leftover_part_files_are_cleaned(tmp_path: Path) -> None:
    out = tmp_path / "quants"
    out.mkdir()
    (out / "m-Q4_K_M.gguf.part").write_bytes(b"x" * 10)
    (out / "m-Q8_0.gguf").write_bytes(b"x")
    (out / "firefox-download.part").write_bytes(b"x")  # not ours: left alone
    removed = clean_partial_outputs([out, tmp_path / "missing"])
    assert [p.name for p in removed] == ["m-Q4_K_M.gguf.part"]
    assert sorted(p.name for p in out.iterdir()) == ["firefox-download.part", "m-Q8_0.gguf"]


def test_own_running_runs_are_not_marked_interrupted(store: ResultsStore) -> None:
    run = store.begin_run("eval", "/m/x.gguf", "Q8_0")
    assert store.mark_interrupted_at_start() == []
    assert store.get_run(run).state == "running"


_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from qtapp.core.results.store import ResultsStore
    store = ResultsStore.open(sys.argv[1])
    run = store.begin_run("quantize", sys.argv[2], "Q4_K_M")
    part = Path(sys.argv[3])
    with part.open("wb") as fh:
        i = 0
        while True:
            store.add_points(run, "progress", [float(i)], [i / 100.0])
            fh.write(b"q" * 4096)
            fh.flush()
            i += 1
            if i == 20:
                print(run, flush=True)  # the parent kills us once it reads this
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_while_writing_leaves_a_consistent_store(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite3"
    out = tmp_path / "quants"
    out.mkdir()
    with ResultsStore.open(db) as store:
        earlier = store.begin_run("eval", "/m/earlier-Q8_0.gguf", "Q8_0")
        store.add_points(earlier, "ppl", [1, 2, 3], [9.0, 8.0, 7.0])
        store.finish_run(earlier, "finished", {"ppl": 7.0})

    part = out / "model-Q4_K_M.gguf.part"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(db), "/m/model.gguf", str(part)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        killed_run = int(child.stdout.readline())
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert part.exists()

    with ResultsStore.open(db) as store:
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        recovery = recover_at_start(store, [out])
        assert recovery.interrupted == [killed_run]
        assert recovery.removed == [part] and not part.exists()
        assert "interrupted" in recovery.message() and "partial file" in recovery.message()
        killed = store.get_run(killed_run)
        assert killed.state == "interrupted" and "killed or crashed" in killed.message
        assert len(store.curves(killed_run)["progress"]) >= 20  # what was written is kept
        before = store.get_run(earlier)
        assert before.state == "finished" and before.metrics == {"ppl": 7.0}
        assert store.curves(earlier)["ppl"].ys.tolist() == [9.0, 8.0, 7.0]


def test_one_fingerprint_for_the_planner_and_the_store(tiny_model: Path, tmp_path: Path) -> None:
    """The planner's ModelInfo and the results store identify a file the same way, so measured
    quality and speeds find their model by fingerprint, not only by name."""

    from qtapp.core.fit.quality_order import _same_model
    from qtapp.core.gguf.model import read_model

    assert read_model(tiny_model).fingerprint == model_info(tiny_model).fingerprint
    renamed = tmp_path / "elsewhere" / "renamed.gguf"
    renamed.parent.mkdir()
    shutil.copy(tiny_model, renamed)
    with ResultsStore.open(tmp_path / "r.db") as store:
        run = store.get_run(store.begin_run("eval", renamed, "x", model_name="another name"))
    assert _same_model(run, read_model(tiny_model), {})
