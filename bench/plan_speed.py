"""How long does an exact plan of every quant type take? Cold, cached, and a context change.

    python3 bench/plan_speed.py [--runs 3]

Three models: the Qwen3.5-397B-A17B header-only seed (60 layers, 512 experts, 248k-token
vocabulary; sparse, written here), a Qwen2.5-7B header (28 layers, 152k-token vocabulary; its
Q4_K_M sizes to 4,677,120,000 bytes of weights, the real file's 4.68 GB less its header) and the
real Gemma 3 270M (262k-token vocabulary).
For each:

* cold: ``quantlens plan MODEL --gpus 2x48GiB --json`` as a new process with an empty figure
  cache (llama.cpp's build info stays cached, as after the app's first start): llama.cpp's dry
  run of every type and recipe plus a no-alloc load, all exact;
* cached: the same command again (figures from the cache);
* unit: one llama.cpp quantizer dry run of Q4_K_M on the file itself, timed inside the worker
  (the ``seconds`` of a ``dry_quantize`` job): the cold plan is given in these units too;
* replan: in one process with the exact weights loaded, ``make_plan`` for a new context and KV
  type (the window's slider move; llama.cpp's exact KV / compute follow from a dry load).

Prints a Markdown table (medians of ``--runs``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qtapp.core.app.demo import demo_model_path  # noqa: E402
from qtapp.core.fit import exact as fit_exact  # noqa: E402
from qtapp.core.fit.devices import parse_gpu_spec  # noqa: E402
from qtapp.core.fit.kv_model import ContextSettings  # noqa: E402
from qtapp.core.fit.plan import PlanInputs, make_plan, targets_for  # noqa: E402
from qtapp.core.gguf.model import read_model  # noqa: E402
from qtapp.core.jobs.job import run_job  # noqa: E402
from qtapp.testing.archs import QWEN35_397B, write_qwen2, write_qwen35moe  # noqa: E402


def cli_seconds(model: Path, home: Path, clear: bool) -> float:
    if clear:
        shutil.rmtree(home / "cache" / "fit", ignore_errors=True)
    env = {**os.environ, "QUANTLENS_HOME": str(home)}
    cmd = [sys.executable, "-m", "qtapp", "plan", str(model), "--gpus", "2x48GiB", "--json"]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def replan_ms(model: Path) -> float:
    m = read_model(model)
    targets = targets_for(m)
    weights = fit_exact.ManyWeights(m, targets, {}).weights  # the cache the cold run filled
    inp = PlanInputs(m, ContextSettings(n_ctx=4096), parse_gpu_spec("2x48GiB"), weights=weights)
    make_plan(inp)
    times = []
    for n_ctx, kv in ((8192, "q8_0"), (16384, "f16"), (32768, "q4_0")):
        inp.settings = ContextSettings(n_ctx=n_ctx, type_k=kv, type_v=kv)
        t0 = time.perf_counter()
        make_plan(inp)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ql-planspeed-") as tmp:
        home = Path(tmp) / "home"
        os.environ["QUANTLENS_HOME"] = str(home)
        seed = write_qwen35moe(Path(tmp) / "seed.gguf", QWEN35_397B)
        q7b = write_qwen2(Path(tmp) / "qwen2.5-7b.gguf")
        models = [
            ("Qwen3.5-397B-A17B seed header", seed),
            ("Qwen2.5-7B header", q7b),
            ("Gemma 3 270M", demo_model_path()),
        ]
        print(
            "| model | types | cold plan (s) | in dry-run units | cached plan (s) | "
            "one dry run (s) | replan, new ctx + KV (ms) |"
        )
        print("|---|---|---|---|---|---|---|")
        for label, model in models:
            model = Path(model)
            cli_seconds(model, home, clear=True)  # llama.cpp's build info, once
            cold = statistics.median(cli_seconds(model, home, True) for _ in range(args.runs))
            warm = statistics.median(cli_seconds(model, home, False) for _ in range(args.runs))
            unit = run_job("dry_quantize", model=str(model), target="Q4_K_M")["seconds"]
            n = len(targets_for(read_model(model)))
            print(
                f"| {label} | {n} | {cold:.2f} | {cold / unit:.1f} | {warm:.2f} | "
                f"{unit:.3f} | {replan_ms(model):.0f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
