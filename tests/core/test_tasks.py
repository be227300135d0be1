"""HellaSwag accuracy as llama-perplexity scores it: the file, the task draw, the job, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.tasks import Mt19937, hellaswag_tasks, read_hellaswag, wilson
from qtapp.core.jobs.events import Point
from qtapp.core.jobs.job import Job, JobSpec, run_job
from qtapp.core.results.store import ResultsStore

pytestmark = pytest.mark.timeout(300)

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "to", "see"]
WORDS += ["the", "dog", "play", "in", "sun"]


def _write_tasks(path: Path, n: int) -> Path:
    lines = []
    for i in range(n):
        ctx = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(6))
        lines.append(f"Cats: {ctx}")
        lines.append(str(i % 4))
        for e in range(4):
            lines.append(" ".join(WORDS[(i * 3 + e * 5 + k) % len(WORDS)] for k in range(3 + e)))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_task_draw_is_llama_perplexitys() -> None:
    rng = Mt19937(1)
    assert [rng() for _ in range(2)] == [1791095845, 4282876139]  # std::mt19937(1)
    rng = Mt19937()
    for _ in range(9999):
        rng()
    assert rng() == 4123659995  # the C++ standard's check of the 10000th value
    draws = [Mt19937(1).below(10042) for _ in range(3)]
    assert len(set(draws)) == 1 and 0 <= draws[0] < 10042
    fake = [type("T", (), {"index": i})() for i in range(50)]
    order = [t.index for t in hellaswag_tasks(fake, 50)]  # type: ignore[arg-type]
    assert sorted(order) == list(range(50)) and order != list(range(50))
    assert [t.index for t in hellaswag_tasks(fake, 5)] == order[:5]  # type: ignore[arg-type]


def test_bad_task_files_get_one_clear_line(tmp_path: Path) -> None:
    cases = {
        "empty.txt": ("", "is empty"),
        "seven.txt": ("a\n0\nb\nc\nd\ne\nf\n", "not a multiple of 6"),
        "label.txt": ("a\n7\nb\nc\nd\ne\n", "right ending"),
    }
    for name, (text, words) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(QuantLensError, match=words):
            read_hellaswag(tmp_path / name)
    with pytest.raises(QuantLensError, match="not found"):
        read_hellaswag(tmp_path / "missing.txt")
    with pytest.raises(QuantLensError, match="is a folder"):
        read_hellaswag(tmp_path)
    ok = read_hellaswag(_write_tasks(tmp_path / "ok.txt", 3))
    assert [t.gold for t in ok] == [0, 1, 2] and len(ok[0].endings) == 4


def test_wilson_interval() -> None:
    """llama-perplexity's rearranged formula equals the textbook Wilson score interval."""
    import math

    z, n, p = 1.95996398454, 40, 14 / 40
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = wilson(14, 40)
    assert lo == pytest.approx(centre - half, rel=1e-12)
    assert hi == pytest.approx(centre + half, rel=1e-12)
    assert wilson(0, 0) == (0.0, 1.0)


def test_the_job_streams_accuracy_and_keeps_every_answer(tiny_model: Path, tmp_path: Path) -> None:
    tasks = _write_tasks(tmp_path / "hs.txt", 12)
    job = Job(JobSpec("tasks", {"model": str(tiny_model), "tasks": str(tasks), "limit": 8}))
    events = list(job.events())
    points = [e for e in events if isinstance(e, Point)]
    assert [p.x for p in points] == list(range(1, 9))
    r = events[-1].result
    assert len(r["answers"]) == r["tasks_scored"] == 8
    assert r["correct"] == r["answers"].count("1")
    assert r["acc_lo"] <= r["acc"] <= r["acc_hi"]
    assert points[-1].y == pytest.approx(r["acc"])


def test_a_task_longer_than_the_context_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    tasks = _write_tasks(tmp_path / "hs.txt", 2)
    with pytest.raises(QuantLensError, match="larger --ctx"):
        run_job("tasks", model=str(tiny_model), tasks=str(tasks), limit=2, ctx=8)


def test_cli_scores_stores_and_refuses_bad_files(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qtapp.__main__ import main

    tasks = _write_tasks(tmp_path / "hs.txt", 6)
    assert main(["tasks", str(tiny_model), "--tasks", str(tasks), "--limit", "4", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["task"] for x in lines[:-1]] == [1, 2, 3, 4] and lines[-1]["final"]
    with ResultsStore.open() as store:
        (run,) = store.list_runs(kind="tasks")
    assert run.metrics["tasks_scored"] == 4 and len(run.metrics["answers"]) == 4
    assert run.settings["tasks_sha256"] and run.settings["limit"] == 4
    bad = tmp_path / "bad.txt"
    bad.write_text("x\n")
    assert main(["tasks", str(tiny_model), "--tasks", str(bad)]) == 2
    assert "not a multiple of 6" in capsys.readouterr().err
