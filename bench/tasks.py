"""Task accuracy: QuantLens against llama.cpp's own ``llama-perplexity`` (HellaSwag, Winogrande,
multiple choice).

    python3 bench/tasks.py [--kind hellaswag|winogrande|mc|all] [--tasks 400]
                           [--models F16,Q4_K_M,Q2_K] [--src VENDORED_LLAMA_CPP] [--threads 2]

Builds ``llama-perplexity`` from the llama.cpp vendored in the llama-cpp-python sdist (as
``bench/eval.py`` does, into ``bench/out/``), decompresses the HellaSwag validation set from
``../shared/data/tasks/`` into a temporary folder (it is never copied into the repository),
and scores Gemma 3 270M as F16 (made from the PyPI file), the PyPI Q4_K_M and a Q2_K with both
tools, the same tasks, context 512 and threads.

Winogrande and multiple-choice files are made at run time, in the same temporary folder, from
the first 1,000 HellaSwag tasks: a Winogrande row is ``context _second`` with two choices (the
first 1-3 words of the right ending and of a wrong one; ``second`` is the rest of the right
ending, or only "." every third row, so that both of llama.cpp's scoring paths run); a
multiple-choice task is the context and its four endings (every fifth task only two), label 1
on the right one. Passed as ``-f FILE --winogrande --winogrande-tasks N`` and ``-bf FILE
--multiple-choice --multiple-choice-tasks N``.

Compared: the number of right answers, the answers task by task (Winogrande: each tool's
choice and both scores, from its per-task lines; the others: read from each tool's running
accuracy) and the wall time of the whole command (ratio = llama-perplexity's time over
QuantLens'; goal >= 1.0). Prints a Markdown table; after each row, to stderr, the tasks where
the tools differ (and for Winogrande how far apart the printed scores are).
"""

from __future__ import annotations

import argparse
import bz2
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from eval import DEFAULT_SRC, build_tools  # noqa: E402

from qtapp.core.app.demo import demo_model_path  # noqa: E402
from qtapp.core.evaluate.tasks import read_hellaswag  # noqa: E402
from qtapp.core.jobs.job import run_job  # noqa: E402

TASKS = ROOT.parent / "shared" / "data" / "tasks" / "hellaswag_val_full.txt.bz2"
KINDS = ("hellaswag", "winogrande", "mc")
NAMES = {"hellaswag": "HellaSwag", "winogrande": "Winogrande", "mc": "multiple choice"}
_HS_LINE = re.compile(r"^(\d+)\t([\d.]+)%\t\[")
# winogrande_score: "%zu\t%.4lf\t%10.6f  %10.6f  %d  %d": task, accuracy, 2 scores, pick, answer
_WG_LINE = re.compile(r"^(\d+)\t([\d.]+)\t\s*(\S+)\s+(\S+)\s+([12])\s+([12])$")
_MC_LINE = re.compile(r"^(\d+)\t([\d.]+)$")  # multiple_choice_score: "%d\t%.8lf"


# -- task files made from HellaSwag ---------------------------------------------------------------
def make_winogrande(hellaswag: Path, out: Path, n: int = 1000) -> Path:
    """A Winogrande CSV (a header, ``n`` rows) from the first ``n`` HellaSwag tasks."""

    def field(text: str) -> str:  # choices are not unquoted by llama.cpp: no commas, no quotes
        return text.replace(",", "").replace('"', "")

    rows = ["index,sentence,option1,option2,answer"]
    for i, t in enumerate(read_hellaswag(hellaswag)[:n]):
        right = t.endings[t.gold].split()
        wrong = t.endings[(t.gold + 1 + i % 3) % 4].split()
        k = 1 + i % 3
        second = "." if i % 3 == 0 else " " + " ".join(right[k : k + 8]) + "."
        sentence = t.context.replace('"', "") + " _" + second.replace('"', "")
        if "," in sentence:
            sentence = f'"{sentence}"'
        choices = [field(" ".join(right[:k])) or "it", field(" ".join(wrong[:k])) or "they"]
        answer = 1 + i % 2
        if answer == 2:
            choices.reverse()
        rows.append(f"{i},{sentence},{choices[0]},{choices[1]},{answer}")
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


def make_mc(hellaswag: Path, out: Path, n: int = 1000) -> Path:
    """A multiple-choice binary file from the first ``n`` HellaSwag tasks."""

    def string(text: str) -> bytes:
        data = text.encode("utf-8")
        return struct.pack("<I", len(data)) + data

    blobs = []
    for i, t in enumerate(read_hellaswag(hellaswag)[:n]):
        if i % 5 == 0:
            endings = [t.endings[t.gold], t.endings[(t.gold + 2) % 4]]
            labels = [1, 0] if i % 2 == 0 else [0, 1]
            if i % 2:
                endings.reverse()
        else:
            endings = list(t.endings)
            labels = [int(k == t.gold) for k in range(4)]
        answers = struct.pack("<I", len(endings)) + b"".join(string(e) for e in endings)
        answers += struct.pack(f"<{len(labels)}i", *labels)
        blobs.append(string(t.context) + answers + answers)
    positions, offset = [], 4 + 4 * len(blobs)
    for b in blobs:
        positions.append(offset)
        offset += len(b)
    header = struct.pack(f"<{len(blobs) + 1}I", len(blobs), *positions)
    out.write_bytes(header + b"".join(blobs))
    return out


# -- the two tools --------------------------------------------------------------------------------
def answers_from_running(pairs: list[tuple[int, float]]) -> str:
    """Right (1) or wrong (0) per task, from a running accuracy printed after each task."""
    out, before = [], 0
    for i, acc in pairs:
        correct = round(acc * i / 100)
        out.append("1" if correct > before else "0")
        before = correct
    return "".join(out)


def llama_perplexity(
    exe: Path, model: Path, tasks: Path, kind: str, n: int, threads: int
) -> tuple[str, float, list[Any]]:
    """(answers, wall time, per task: (pick, score 1, score 2) for Winogrande, else nothing)."""
    how = {
        "hellaswag": ["-f", str(tasks), "--hellaswag", "--hellaswag-tasks", str(n)],
        "winogrande": ["-f", str(tasks), "--winogrande", "--winogrande-tasks", str(n)],
        "mc": ["-bf", str(tasks), "--multiple-choice", "--multiple-choice-tasks", str(n)],
    }[kind]
    cmd = [str(exe), "-m", str(model), *how, "-c", "512", "-t", str(threads)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    lines = out.stdout.splitlines()
    if kind == "winogrande":
        rows = [m for line in lines if (m := _WG_LINE.match(line))]
        answers = "".join("1" if m[5] == m[6] else "0" for m in rows)
        return answers, wall, [(int(m[5]), float(m[3]), float(m[4])) for m in rows]
    pattern = _HS_LINE if kind == "hellaswag" else _MC_LINE
    pairs = [(int(m[1]), float(m[2])) for line in lines if (m := pattern.match(line))]
    return answers_from_running(pairs), wall, []


def quantlens(
    model: Path, tasks: Path, kind: str, n: int, threads: int
) -> tuple[str, float, list[Any]]:
    """(answers, wall time, per task: (pick, scores...)) from ``quantlens tasks --json``."""
    cmd = [sys.executable, "-m", "qtapp", "tasks", str(model), "--tasks", str(tasks),
           "--kind", kind, "--limit", str(n), "--threads", str(threads), "--json"]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    pairs, picks = [], []
    for line in out.stdout.splitlines():
        row = json.loads(line)
        if "task" in row:
            pairs.append((int(row["task"]), float(row["acc"])))
            picks.append((row.get("pick"), *(row.get("scores") or [])))
    return answers_from_running(pairs), wall, picks


def _score_gap(ours: list[Any], theirs: list[Any]) -> float:
    """Winogrande: the largest difference of a score between the tools (printed to 6 digits)."""
    gap = 0.0
    for a, b in zip(ours, theirs, strict=False):
        for x, y in zip(a[1:3], b[1:3], strict=False):
            if math.isnan(x) != math.isnan(y):
                return math.inf  # one tool's score is nan, the other's is not
            if not math.isnan(x):
                gap = max(gap, abs(x - y))
    return gap


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="hellaswag", choices=(*KINDS, "all"))
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--models", default="F16,Q4_K_M,Q2_K", help="a comma list of these")
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--file", type=Path, default=TASKS, help="the .txt.bz2 task file")
    args = parser.parse_args()
    kinds = ("winogrande", "mc", "hellaswag") if args.kind == "all" else (args.kind,)
    wanted = args.models.split(",")
    exe = build_tools(args.src) / "llama-perplexity"
    with tempfile.TemporaryDirectory(prefix="ql-tasks-") as tmp:
        os.environ["QUANTLENS_HOME"] = str(Path(tmp) / "home")
        text = Path(tmp) / "hellaswag_val_full.txt"
        text.write_bytes(bz2.decompress(args.file.read_bytes()))
        files = {
            "hellaswag": text,
            "winogrande": make_winogrande(text, Path(tmp) / "winogrande.csv"),
            "mc": make_mc(text, Path(tmp) / "mc.bin"),
        }
        demo = Path(demo_model_path())
        models = {"Q4_K_M": demo}
        if "F16" in wanted or "Q2_K" in wanted:
            f16 = Path(tmp) / "gemma-F16.gguf"
            run_job("quantize", model=str(demo), out=str(f16), target="F16", allow_requantize=True)
            models["F16"] = f16
        if "Q2_K" in wanted:
            q2 = Path(tmp) / "gemma-Q2_K.gguf"
            run_job("quantize", model=str(f16), out=str(q2), target="Q2_K", allow_requantize=True)
            models["Q2_K"] = q2
        print(
            "| tasks | model | n | right: QuantLens / llama-perplexity | same answers | "
            "wall QuantLens (s) | wall llama-perplexity (s) | ratio |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for kind in kinds:
            for label in ("F16", "Q4_K_M", "Q2_K"):
                if label not in wanted:
                    continue
                model = models[label]
                ours, t_ours, our_rows = quantlens(model, files[kind], kind, args.tasks,
                                                   args.threads)  # fmt: skip
                theirs, t_theirs, their_rows = llama_perplexity(
                    exe, model, files[kind], kind, args.tasks, args.threads
                )
                same = sum(a == b for a, b in zip(ours, theirs, strict=False))
                name = "Q4_K_M (PyPI)" if label == "Q4_K_M" else label
                print(
                    f"| {NAMES[kind]} | Gemma 3 270M {name} | {len(theirs)} | "
                    f"{ours.count('1')} / {theirs.count('1')} | {same} of {len(theirs)} | "
                    f"{t_ours:.1f} | {t_theirs:.1f} | {t_theirs / t_ours:.2f} |",
                    flush=True,
                )
                notes = []
                if len(ours) != len(theirs):
                    notes.append(f"{kind} {label}: {len(ours)} tasks against {len(theirs)}")
                for i, (a, b) in enumerate(zip(ours, theirs, strict=False)):
                    if a != b:
                        detail = f"ours {our_rows[i]}" if i < len(our_rows) else ""
                        if i < len(their_rows):
                            detail += f", llama-perplexity {their_rows[i]}"
                        notes.append(f"{kind} {label} task {i + 1}: {a} against {b}; {detail}")
                if kind == "winogrande":
                    gap = _score_gap(our_rows, their_rows)
                    picks = sum(a[0] == b[0] for a, b in zip(our_rows, their_rows, strict=False))
                    notes.append(
                        f"winogrande {label}: same choice on {picks} of {len(their_rows)} "
                        f"tasks, largest score difference {gap:.6f}"
                    )
                for note in notes:
                    print(note, file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
