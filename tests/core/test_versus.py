"""Model vs model: paired differences, verdicts, the best fitting quant, and `quantlens versus`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qtapp.core.results.store import ResultsStore
from qtapp.core.results.versus import (
    mcnemar_exact,
    models_verdict,
    paired_diff,
    task_scores,
    verdict,
)
from tests.core.test_tasks import _write_tasks
from tests.quant_helper import drop_layers

pytestmark = pytest.mark.timeout(300)


def test_paired_difference_counts_only_the_tasks_that_differ() -> None:
    a = "1" * 60 + "0" * 40
    b = "1" * 50 + "0" * 50  # A right on 10 more tasks, never the other way round
    d = paired_diff(a, b)
    assert (d.n, d.only_a, d.only_b) == (100, 10, 0)
    assert d.diff == pytest.approx(10.0)
    # exact: 10 of 10 disagreements for A; Clopper-Pearson's lower bound is 0.025^(1/10)
    assert (d.lo, d.hi) == pytest.approx((10 * (2 * 0.025 ** (1 / 10) - 1), 10.0), abs=1e-6)
    assert d.significant and d.p_value == pytest.approx(2 / 2**10)
    # 5 of 5: the exact test says p = 0.0625, and the interval reaches below 0 with it
    five = paired_diff("1" * 5 + "0" * 95, "0" * 100)
    assert not five.significant and five.lo < 0 < five.hi
    # the common prefix only: a longer run is cut to the tasks both answered
    assert paired_diff(a + "1111", b).n == 100


def test_mcnemar_exact_is_a_two_sided_binomial_test() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0
    # 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * (1 + 10 + 45) / 1024
    assert mcnemar_exact(8, 2) == pytest.approx(2 * 56 / 1024)


def _store_task_run(
    store: ResultsStore, model: Path, label: str, answers: str, sha: str = "abc123"
) -> int:
    run_id = store.begin_run(
        "tasks", model, label, settings={"tasks_sha256": sha, "kind": "hellaswag",
                                         "tasks": "/data/hs.txt", "limit": len(answers)},
    )  # fmt: skip
    store.finish_run(run_id, "finished", {"answers": answers, "acc": 0.0})
    return run_id


def test_verdicts_pick_each_models_best_fitting_quant(tiny_model: Path, tmp_path: Path) -> None:
    other = drop_layers(tiny_model, tmp_path / "tiny-pruned.gguf", {3}, "tiny-pruned")
    with ResultsStore.open() as store:
        big = _store_task_run(store, tiny_model, "F16", "1" * 70 + "0" * 30)
        small = _store_task_run(store, tiny_model, "Q2_K", "1" * 55 + "0" * 45)
        theirs = _store_task_run(store, other, "F16", "1" * 50 + "0" * 50)
        _store_task_run(store, other, "F16", "1" * 99 + "0", sha="another-task-file")
        scores = task_scores(store.list_runs())
    assert len(scores) == 4
    need = {big: 10e9, small: 3e9, theirs: 5e9}
    v = models_verdict(scores, need, budget_bytes=6e9)  # the F16 of tiny-llama does not fit
    assert v is not None and [(s.model, s.label) for s in v.best] == [
        ("tiny-llama", "Q2_K"), ("tiny-pruned", "F16")
    ]  # fmt: skip
    (a, b, d, sentence) = v.pairs[0]
    assert d.n == 100 and d.only_a == 5 and not d.significant
    assert "within noise" in sentence and "+5.0 points" in sentence
    unlimited = models_verdict(scores, need, budget_bytes=None)
    assert unlimited is not None and unlimited.best[0].label == "F16"
    assert unlimited.pairs[0][3].startswith("tiny-llama at F16 beats tiny-pruned at F16 by 20.0")
    nothing = models_verdict(scores, need, budget_bytes=4e9)
    assert nothing is None or nothing.nothing_fits == ["tiny-pruned"]
    assert verdict(scores[0], scores[0]).startswith("The difference between")


def test_versus_cli_scores_reuses_and_states_a_verdict(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qtapp.__main__ import main

    other = drop_layers(tiny_model, tmp_path / "tiny-pruned.gguf", {3}, "tiny-pruned")
    tasks = _write_tasks(tmp_path / "hs.txt", 8)
    args = ["versus", str(tiny_model), str(other), "--tasks", str(tasks), "--limit", "6"]
    assert main([*args, "--gpus", "1x8GiB", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [m["tasks_scored"] for m in out["models"]] == [6, 6]
    assert [m["reused"] for m in out["models"]] == [False, False]
    assert out["models"][0]["fit"]["verdict"] == "fits"
    (pair,) = out["pairs"]
    assert pair["tasks"] == 6 and pair["verdict"].endswith("6 tasks).")
    # the second time, both scores come from the store
    assert main([*args, "--json"]) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [m["reused"] for m in again["models"]] == [True, True]
    assert again["pairs"][0]["verdict"] == pair["verdict"]
    with ResultsStore.open() as store:
        stored = store.list_runs(kind="versus")
    assert len(stored) == 2 and stored[0].metrics["pairs"][0]["verdict"] == pair["verdict"]
    assert main(["versus", str(tiny_model), "--tasks", str(tasks)]) == 1
    assert "two or more" in capsys.readouterr().err


def test_clopper_pearson_matches_known_intervals() -> None:
    from qtapp.core.results.versus import clopper_pearson

    # R: binom.test(3, 10)$conf.int and binom.test(50, 100)$conf.int
    assert clopper_pearson(3, 10) == pytest.approx((0.06673951, 0.65245285), abs=1e-7)
    assert clopper_pearson(50, 100) == pytest.approx((0.39832113, 0.60167887), abs=1e-7)
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)), abs=1e-9)
