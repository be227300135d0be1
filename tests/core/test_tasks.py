"""Task accuracy as llama-perplexity scores it (HellaSwag, Winogrande, multiple choice): the
files, the task draws, the jobs, the CLI."""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.tasks import (
    Mt19937,
    detect_task_kind,
    float_draw,
    hellaswag_tasks,
    mc_tasks,
    read_hellaswag,
    read_multiple_choice,
    read_winogrande,
    wilson,
    winogrande_tasks,
)
from qtapp.core.jobs.events import Failed, Point
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
    assert "Cannot tell the task format" in capsys.readouterr().err
    assert main(["tasks", str(tiny_model), "--tasks", str(bad), "--kind", "hellaswag"]) == 2
    assert "not a multiple of 6" in capsys.readouterr().err


# -- Winogrande and multiple choice -------------------------------------------------------------
WG_ROWS = [
    "index,sentence,option1,option2,answer",  # a header: its answer is no number, skipped
    "0,Sarah beat Maria so _ won.,Sarah,Maria,1",
    '1,"Tom, not Bob, said _ left.",Tom,Bob,2\r',  # quoted sentence, CRLF
    "2,no blank here,a,b,1",  # no _: skipped
    "3,x _ y,a,b,3",  # answer not 1 or 2: skipped
    "4,x _ y,a,b",  # 3 commas: skipped
    '5,He said "_, ok" then,c,d, 2,extra',  # quotes inside: the comma between them is text
    "6,last _ row,e,f,1",
]


def _wg_file(path: Path, rows: list[str], end: str = "\n") -> Path:
    path.write_bytes(("\n".join(rows) + end).encode())
    return path


def test_winogrande_rows_are_read_as_llama_cpp_reads_them(tmp_path: Path) -> None:
    tasks = read_winogrande(_wg_file(tmp_path / "wg.csv", WG_ROWS))
    # the last row is never read: -f drops the final newline, getline then hits the end
    assert [(t.first, t.second, t.choices, t.answer) for t in tasks] == [
        (b"Sarah beat Maria so ", b" won.", (b"Sarah", b"Maria"), 1),
        (b"Tom, not Bob, said ", b" left.", (b"Tom", b"Bob"), 2),
        (b'He said "', b', ok" then', (b"c", b"d"), 2),
    ]
    assert [t.index for t in tasks] == [0, 1, 2]
    no_newline = read_winogrande(_wg_file(tmp_path / "b.csv", WG_ROWS, end=""))
    assert len(no_newline) == 3
    blank_end = read_winogrande(_wg_file(tmp_path / "c.csv", WG_ROWS, end="\n\n"))
    assert len(blank_end) == 4 and blank_end[-1].choices == (b"e", b"f")
    crlf = read_winogrande(_wg_file(tmp_path / "d.csv", [r + "\r" for r in WG_ROWS[:3]] + [""]))
    assert [t.answer for t in crlf] == [1, 2] and crlf[0].choices == (b"Sarah", b"Maria")


def test_bad_winogrande_files_get_one_clear_line(tmp_path: Path) -> None:
    cases = {"empty.csv": ("", "is empty"), "rows.csv": ("a,b\nc,d,e,f,g\n\n", "no Winogrande")}
    for name, (text, words) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(QuantLensError, match=words):
            read_winogrande(tmp_path / name)
    with pytest.raises(QuantLensError, match="not found"):
        read_winogrande(tmp_path / "missing.csv")


# std::mt19937 rng(1); float scale = 1/(1.f + (float)rng.max()); j = int(scale*rng()*size),
# aux[j] = aux.back(), pop_back: printed by the C++ program below (g++ 13, x86-64)
DRAW_CPP = r"""
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>
int main(int argc, char ** argv) {
    size_t size = atoi(argv[1]), count = atoi(argv[2]);
    std::mt19937 rng(1);
    std::vector<int> aux(size);
    for (size_t i = 0; i < size; ++i) aux[i] = i;
    float scale = 1/(1.f + (float)rng.max());
    for (size_t i = 0; i < count; ++i) {
        int j = int(scale*rng()*aux.size());
        printf("%d ", aux[j]);
        aux[j] = aux.back(); aux.pop_back();
    }
}
"""
KNOWN_DRAWS = {
    (10, 10): [4, 8, 5, 6, 0, 7, 1, 2, 9, 3],
    (1267, 12): [528, 1262, 911, 1178, 0, 161, 381, 1258, 184, 296, 116, 498],
    # in float the draws differ from exact arithmetic (29915545, 21609735, ...)
    (30000001, 6): [12510660, 29915544, 21609736, 27976718, 3431, 3843732],
}


def test_the_float_draw_is_llama_perplexitys(tmp_path: Path) -> None:
    for (size, count), expected in KNOWN_DRAWS.items():
        assert float_draw(size, count) == expected
    gxx = shutil.which("g++")
    if gxx:  # the same from a fresh compile
        (tmp_path / "draw.cpp").write_text(DRAW_CPP)
        exe = tmp_path / "draw"
        subprocess.run([gxx, "-O2", "-o", str(exe), str(tmp_path / "draw.cpp")], check=True)
        for size, count in ((7, 7), (1267, 40), (9999, 25)):
            out = subprocess.run([str(exe), str(size), str(count)], capture_output=True, text=True)
            assert float_draw(size, count) == [int(x) for x in out.stdout.split()]
    wg = read_winogrande(_wg_file(tmp_path / "wg.csv", WG_ROWS))
    assert [t.index for t in winogrande_tasks(wg, 0)] == [0, 1, 2]  # 0: all, in order
    assert [t.index for t in winogrande_tasks(wg, 3)] == [0, 1, 2]  # not below the size
    assert [t.index for t in winogrande_tasks(wg, 2)] == float_draw(3, 2)
    mc = read_multiple_choice(_mc_file(tmp_path / "mc.bin", [_mc_task(i) for i in range(5)]))
    assert [t.index for t in mc_tasks(mc, 0)] == [0, 1, 2, 3, 4]
    assert [t.index for t in mc_tasks(mc, 9)] == [0, 1, 2, 3, 4]
    assert [t.index for t in mc_tasks(mc, 4)] == float_draw(5, 4)


def _s(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<I", len(data)) + data


def _answers(answers: list[str], labels: list[int]) -> bytes:
    out = struct.pack("<I", len(answers)) + b"".join(_s(a) for a in answers)
    return out + struct.pack(f"<{len(labels)}i", *labels)


def _mc_task(i: int, n: int = 4, right: int = 0) -> bytes:
    words = [" ".join(WORDS[(i + a * 3 + k) % len(WORDS)] for k in range(2 + a)) for a in range(n)]
    question = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(6))
    labels = [int(a == right) for a in range(n)]
    return _s(question) + _answers(words, labels) + _answers(words[:2], [1, 1])


def _mc_file(path: Path, blobs: list[bytes]) -> Path:
    n, pos, off = len(blobs), [], 4 + 4 * len(blobs)
    for b in blobs:
        pos.append(off)
        off += len(b)
    path.write_bytes(struct.pack(f"<{n + 1}I", n, *pos) + b"".join(blobs))
    return path


def test_multiple_choice_files(tmp_path: Path) -> None:
    tasks = read_multiple_choice(
        _mc_file(tmp_path / "mc.bin", [_mc_task(0), _mc_task(1, n=2, right=1)])
    )
    assert [len(t.answers) for t in tasks] == [4, 2]
    assert tasks[1].labels == (0, 1) and tasks[0].question.startswith(b"the cat")
    good = [_mc_task(0), _mc_task(1)]
    header = struct.pack("<3I", 2, 12, 12 + len(good[0]))
    cases = {
        "empty": (b"", "is empty"),
        "zero": (struct.pack("<I", 0), "no tasks"),
        "short": (b"\x01\x00", "truncated"),
        "table": (struct.pack("<2I", 1000, 8), "position table alone runs past the end"),
        "cut": (header + good[0] + good[1][:-3], "truncated"),
        "length": (header + struct.pack("<I", 1 << 30) + b"abc", "past the end"),
        "many": (
            struct.pack("<2I", 1, 8) + _s("q") + struct.pack("<I", 101),
            "more than 100",
        ),
        "label": (
            struct.pack("<2I", 1, 8) + _s("q") + _answers(["a", "b"], [0, 2]) + _answers([], []),
            "labels an answer 2",
        ),
        "empty answer": (
            struct.pack("<2I", 1, 8) + _s("q") + _answers(["a", ""], [1, 0]) + _answers([], []),
            "empty question or answer",
        ),
        "positions": (struct.pack("<3I", 2, 12, 13) + good[0] + good[1], "position table puts"),
    }
    for name, (data, words) in cases.items():
        path = tmp_path / f"{name}.bin"
        path.write_bytes(data)
        with pytest.raises(QuantLensError, match=words):
            read_multiple_choice(path)


def test_the_task_format_is_told_from_the_content(tmp_path: Path) -> None:
    assert detect_task_kind(_write_tasks(tmp_path / "hs.txt", 3)) == "hellaswag"
    assert detect_task_kind(_wg_file(tmp_path / "wg.txt", WG_ROWS)) == "winogrande"
    assert detect_task_kind(_mc_file(tmp_path / "mc.csv", [_mc_task(0)])) == "mc"
    (tmp_path / "other.txt").write_text("hello\nworld\n")
    with pytest.raises(QuantLensError, match="Cannot tell"):
        detect_task_kind(tmp_path / "other.txt")
    (tmp_path / "blank.bin").write_bytes(b"\n\n")
    with pytest.raises(QuantLensError, match="is empty"):
        detect_task_kind(tmp_path / "blank.bin")


def _wg_rows(n: int) -> list[str]:
    rows = []
    for i in range(n):
        first = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(5))
        second = "." if i % 2 else " " + " ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(5))
        rows.append(f"{i},{first} _{second},{WORDS[i % 7]},{WORDS[(i + 3) % 11]},{1 + i % 2}")
    return rows


@pytest.mark.parametrize("kind", ["winogrande", "mc"])
def test_winogrande_and_mc_jobs_score_every_task(
    kind: str, tiny_model: Path, tmp_path: Path
) -> None:
    if kind == "winogrande":
        path = _wg_file(tmp_path / "wg.csv", _wg_rows(11))  # 10 read: the last is dropped
    else:
        blobs = [_mc_task(i, n=2 + 2 * (i % 2), right=i % 2) for i in range(9)]
        path = _mc_file(tmp_path / "mc.bin", blobs)
    job = Job(JobSpec("tasks", {"model": str(tiny_model), "tasks": str(path), "kind": kind,
                                "limit": 7}))  # fmt: skip
    events = list(job.events())
    points = [e for e in events if isinstance(e, Point)]
    assert [p.x for p in points] == list(range(1, 8)) and {p.series for p in points} == {kind}
    r = events[-1].result
    assert r["kind"] == kind and len(r["answers"]) == r["tasks_scored"] == 7
    assert r["correct"] == r["answers"].count("1") and 0 <= r["acc"] <= 100
    assert all(len(p.extra["scores"]) in (2, 4) for p in points)


def test_mc_refuses_more_answers_than_sequences_and_short_contexts(
    tiny_model: Path, tmp_path: Path
) -> None:
    def failure(params: dict[str, object]) -> str:
        last, _ = Job(JobSpec("tasks", {"model": str(tiny_model), **params})).run()
        assert isinstance(last, Failed)
        return f"{last.message} {last.hint}"

    path = _mc_file(tmp_path / "mc5.bin", [_mc_task(0), _mc_task(1, n=5)])
    assert "5 answers" in failure({"tasks": str(path), "kind": "mc", "limit": 0})
    wg = _wg_file(tmp_path / "wg.csv", _wg_rows(3))
    assert "larger --ctx" in failure({"tasks": str(wg), "kind": "auto", "ctx": 4})


def test_cli_detects_the_kind_and_names_it(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qtapp.__main__ import main

    wg = _wg_file(tmp_path / "wg.csv", _wg_rows(6))
    assert main(["tasks", str(tiny_model), "--tasks", str(wg), "--limit", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("Winogrande: ")
    with ResultsStore.open() as store:
        (run,) = store.list_runs(kind="tasks")
    assert run.settings["kind"] == "winogrande" and run.settings["tasks_sha256"]


def test_the_evaluate_page_shows_the_detected_format(qtbot: Any, tmp_path: Path) -> None:
    pytest.importorskip("PySide6")
    from qtapp.ui.evaluate.controls import EvalControls

    controls = EvalControls()
    qtbot.addWidget(controls)
    assert "*.csv" in controls.task_file.file_filter and "*.bin" in controls.task_file.file_filter
    controls.task_file.set_text(str(_mc_file(tmp_path / "mc.bin", [_mc_task(0)])))
    assert controls.task_kind == "mc" and controls.task_kind_label.text() == "Multiple choice"
    controls.task_file.set_text(str(_wg_file(tmp_path / "wg.csv", WG_ROWS)))
    assert controls.task_kind == "winogrande"
    (tmp_path / "x.txt").write_text("x\n")
    controls.task_file.set_text(str(tmp_path / "x.txt"))
    assert controls.task_kind is None and controls.task_kind_label.text() == "unknown format"
    controls.task_file.set_text("")
    assert controls.task_kind_label.text() == ""


def test_endings_that_add_no_token_get_one_clear_line(tiny_model: Path, tmp_path: Path) -> None:
    same = tmp_path / "same.txt"
    same.write_text("Cats: the cat sat\n0\non the mat\non the mat\non the mat\non the mat\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("Cats: the cat sat\n0\n\n\n\n\n")
    for path in (same, empty):
        with pytest.raises(QuantLensError, match="adds no token"):
            run_job("tasks", model=str(tiny_model), tasks=str(path), limit=1)
    wino = tmp_path / "wino.csv"
    # two rows: llama.cpp never reads a file's last row (see read_winogrande). Winogrande is
    # different: winogrande_score reads nothing past the end, both scores are 0/0 = nan, and
    # nan > nan is false, so llama-perplexity answers 2: reproduced
    wino.write_text("0,The cat saw _ on the mat.,a dog,a dog,1\n" * 2)
    job = Job(
        JobSpec("tasks", {"model": str(tiny_model), "tasks": str(wino), "kind": "winogrande"})
    )
    events = list(job.events())
    (point,) = [e for e in events if isinstance(e, Point)]
    assert point.extra["pick"] == 2 and all(math.isnan(v) for v in point.extra["scores"])
    assert events[-1].result["answers"] == "0"
