"""HellaSwag accuracy: QuantLens against llama.cpp's own ``llama-perplexity --hellaswag``.

    python3 bench/tasks.py [--tasks 400] [--src VENDORED_LLAMA_CPP] [--threads 2]

Builds ``llama-perplexity`` from the llama.cpp vendored in the llama-cpp-python sdist (as
``bench/eval.py`` does, into ``bench/out/``), decompresses the HellaSwag validation set from
``../shared/data/tasks/`` into a temporary folder (it is never copied into the repository),
and scores Gemma 3 270M as F16 (made from the PyPI file), the PyPI Q4_K_M and a Q2_K with both
tools, the same tasks, context 512 and threads. Compared: the number of right answers, the
answers task by task (read from each tool's running accuracy) and the wall time of the whole
command (ratio = llama-perplexity's time over QuantLens'; goal >= 1.0).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import bz2
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from eval import DEFAULT_SRC, build_tools  # noqa: E402

from qtapp.core.app.demo import demo_model_path  # noqa: E402
from qtapp.core.jobs.job import run_job  # noqa: E402

TASKS = ROOT.parent / "shared" / "data" / "tasks" / "hellaswag_val_full.txt.bz2"
_LINE = re.compile(r"^(\d+)\t([\d.]+)%\t\[")


def answers_from_running(pairs: list[tuple[int, float]]) -> str:
    """Right (1) or wrong (0) per task, from a running accuracy printed after each task."""
    out, before = [], 0
    for i, acc in pairs:
        correct = round(acc * i / 100)
        out.append("1" if correct > before else "0")
        before = correct
    return "".join(out)


def llama_perplexity(
    exe: Path, model: Path, tasks: Path, n: int, threads: int
) -> tuple[str, float]:
    cmd = [str(exe), "-m", str(model), "-f", str(tasks), "--hellaswag", "--hellaswag-tasks",
           str(n), "-c", "512", "-t", str(threads)]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    pairs = [
        (int(m[1]), float(m[2])) for line in out.stdout.splitlines() if (m := _LINE.match(line))
    ]
    return answers_from_running(pairs), wall


def quantlens(model: Path, tasks: Path, n: int, threads: int) -> tuple[str, float]:
    cmd = [sys.executable, "-m", "qtapp", "tasks", str(model), "--tasks", str(tasks),
           "--limit", str(n), "--threads", str(threads), "--json"]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    import json

    pairs = []
    for line in out.stdout.splitlines():
        row = json.loads(line)
        if "task" in row:
            pairs.append((int(row["task"]), float(row["acc"])))
    return answers_from_running(pairs), wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--file", type=Path, default=TASKS, help="the .txt.bz2 task file")
    args = parser.parse_args()
    exe = build_tools(args.src) / "llama-perplexity"
    with tempfile.TemporaryDirectory(prefix="ql-tasks-") as tmp:
        os.environ["QUANTLENS_HOME"] = str(Path(tmp) / "home")
        text = Path(tmp) / "hellaswag_val_full.txt"
        text.write_bytes(bz2.decompress(args.file.read_bytes()))
        demo = Path(demo_model_path())
        f16 = Path(tmp) / "gemma-F16.gguf"
        run_job("quantize", model=str(demo), out=str(f16), target="F16", allow_requantize=True)
        q2 = Path(tmp) / "gemma-Q2_K.gguf"
        run_job("quantize", model=str(f16), out=str(q2), target="Q2_K", allow_requantize=True)
        print(
            "| model | tasks | right: QuantLens / llama-perplexity | same answers | "
            "wall QuantLens (s) | wall llama-perplexity (s) | ratio |"
        )
        print("|---|---|---|---|---|---|---|")
        for label, model in (("F16", f16), ("Q4_K_M (PyPI)", demo), ("Q2_K", q2)):
            ours, t_ours = quantlens(model, text, args.tasks, args.threads)
            theirs, t_theirs = llama_perplexity(exe, model, text, args.tasks, args.threads)
            same = sum(a == b for a, b in zip(ours, theirs, strict=False))
            print(
                f"| Gemma 3 270M {label} | {len(theirs)} | {ours.count('1')} / "
                f"{theirs.count('1')} | {same} of {len(theirs)} | {t_ours:.1f} | "
                f"{t_theirs:.1f} | {t_theirs / t_ours:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
