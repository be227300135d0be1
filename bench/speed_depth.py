"""QuantLens' speed sweep (``quantlens speed --depth``) against llama.cpp's own ``llama-bench -d``.

Both measure Gemma 3 270M (the PyPI Q4_K_M) on the CPU at the same depths, repetitions and
threads: pp512 and tg128 with ``depth`` tokens already in the KV cache. The host is shared, so
the two tools alternate for ``--rounds`` rounds and each keeps its best round per point. Prints
and records every point: QuantLens tokens/s over llama-bench tokens/s (goal >= 0.98), with the
planner's prediction and its error beside them. Writes a section into BENCHMARKS.md.

Run every timing bench under the shared lock, e.g.

    flock /tmp/ql-bench.lock .venv/bin/python bench/speed_depth.py --depths 0,1024,4096 --reps 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_sections import publish  # noqa: E402

OUT = ROOT / "bench" / "out"
DEFAULT_SRC = Path("/tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp")
MARK_START = "<!-- bench/speed_depth.py:start -->"
MARK_END = "<!-- bench/speed_depth.py:end -->"


def _eval_bench() -> Any:
    spec = importlib.util.spec_from_file_location("ql_bench_eval", ROOT / "bench" / "eval.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def llama_bench(bins: Path, model: Path, args: argparse.Namespace, repack: bool) -> list[dict]:
    cmd = [
        str(bins / "llama-bench"),
        "-m",
        str(model),
        "-p",
        "512",
        "-n",
        "128",
        "-d",
        args.depths,
        "-r",
        str(args.reps),
        "-t",
        str(args.threads),
        "--repack",
        "1" if repack else "0",
        "-o",
        "jsonl",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def quantlens(model: Path, args: argparse.Namespace, home: Path) -> list[dict]:
    cmd = [
        sys.executable,
        "-m",
        "qtapp",
        "speed",
        str(model),
        "--depth",
        args.depths,
        "--reps",
        str(args.reps),
        "--threads",
        str(args.threads),
        "--json",
    ]
    env = {**os.environ, "QUANTLENS_HOME": str(home)}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=ROOT)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _key(p: dict) -> tuple[str, int]:
    test = f"pp{p['n_prompt']}" if p["n_prompt"] else f"tg{p['n_gen']}"
    return test, int(p["n_depth"])


def _best(into: dict[tuple[str, int], dict], points: list[dict]) -> None:
    for p in points:
        k = _key(p)
        if k not in into or p["avg_ts"] > into[k]["avg_ts"]:
            into[k] = p


# long: one straight script: build, alternate the tools, then format one table
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="0,1024,4096")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (best one kept)")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC)
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = ap.parse_args()

    from qtapp.core.app.demo import demo_model_path
    from qtapp.core.jobs.engine.llama_session import cpu_has_amx

    ev = _eval_bench()
    bins = ev.build_tools(args.src)
    model = Path(demo_model_path())
    repack = not cpu_has_amx()
    ref: dict[tuple[str, int], dict] = {}
    ql: dict[tuple[str, int], dict] = {}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}: llama-bench ...", flush=True)
            _best(ref, llama_bench(bins, model, args, repack))
            print(f"round {rnd + 1}: quantlens speed ...", flush=True)
            _best(ql, quantlens(model, args, Path(tmp)))
    load = os.getloadavg()[0]
    rows = []
    for k in sorted(ref, key=lambda k: (k[1], k[0])):
        if k not in ql:
            continue
        q, r = ql[k], ref[k]
        pred = q.get("predicted_ts")
        rows.append(
            (
                f"{k[0]} @ d{k[1]}",
                q["avg_ts"],
                q["stddev_ts"] or 0.0,
                r["avg_ts"],
                r["stddev_ts"],
                q["avg_ts"] / r["avg_ts"],
                pred,
            )
        )
    for row in rows:
        print(
            f"{row[0]:>16}  QuantLens {row[1]:9.2f} ± {row[2]:6.2f}  llama-bench {row[3]:9.2f} ± "
            f"{row[4]:6.2f}  ratio {row[5]:.3f}"
        )
    cmd = (
        f"flock /tmp/ql-bench.lock .venv/bin/python bench/speed_depth.py --depths {args.depths} "
        f"--reps {args.reps} --threads {args.threads} --rounds {args.rounds}"
    )
    lines = [
        MARK_START,
        "## Speed at depth: QuantLens vs llama-bench -d",
        "",
        f"Command: `{cmd}` — Gemma 3 270M Q4_K_M (the PyPI file), CPU, pp512 and tg128 with "
        f"{args.depths.replace(',', ', ')} tokens already in the KV cache, {args.reps} "
        f"repetitions after a warm-up, {args.threads} threads, weight repacking "
        f"{'on' if repack else 'off'} on both sides; llama-bench built from the vendored "
        f"llama.cpp of llama-cpp-python 0.3.36. The tools alternate for {args.rounds} rounds; "
        "each keeps its best round per point.",
        f"Host: {os.cpu_count()} CPUs, shared; load average at the end {load:.1f}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.time() - t0:.0f} s.",
        "",
        "| point | QuantLens t/s | llama-bench t/s | ratio | goal | predicted t/s | "
        "predicted / measured |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, q, qs, r, rs, ratio, pred in rows:
        perr = f"{pred / q:.2f}" if pred and q else "–"
        ptxt = f"{pred:.1f}" if pred else "–"
        mark = "" if ratio >= 0.98 else " (below)"
        lines.append(
            f"| {name} | {q:.2f} ± {qs:.2f} | {r:.2f} ± {rs:.2f} | {ratio:.3f}{mark} | >= 0.98 "
            f"| {ptxt} | {perr} |"
        )
    below = [r for r in rows if r[5] < 0.98]
    lines += [
        "",
        (
            f"{len(rows) - len(below)} of {len(rows)} points at or above the goal."
            if rows
            else "No points measured."
        ),
        MARK_END,
    ]
    publish(lines, MARK_START, MARK_END, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
