"""``quantlens speed MODEL --depth 0,1024,4096``: tokens/s as the context fills, as
``llama-bench -d`` measures it, with the planner's prediction beside each point.

One line per measured point as it arrives (``--json``: one JSON object per point, the fields of
``llama-bench -o jsonl`` plus the prediction). Depths beyond the model's trained context, or a
context the plan says does not fit, are refused before anything starts. Ctrl+C stops the job;
the points measured so far are kept (the stored run is marked partial).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.runs import EvalRecorder
from qtapp.core.evaluate.speed_sweep import (
    SweepPlan,
    check_sweep,
    parse_depths,
    sweep_params,
    this_machine,
)
from qtapp.core.jobs.events import Cancelled, Failed, Finished, Point
from qtapp.core.jobs.job import Job, JobSpec


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "speed",
        help="tokens/s as the context fills (llama-bench -d), predicted and measured",
        description="Measure prompt processing (pp512) and generation (tg128) tokens/s of MODEL "
        "with DEPTH tokens already in the KV cache, exactly as llama-bench -d does (warm-up, "
        "repetitions, mean ± sd), and print the planner's prediction beside each point.",
    )
    parser.add_argument("model", type=Path, help="the .gguf to measure")
    parser.add_argument(
        "--depth",
        default="0",
        help="context depths in tokens, comma-separated (default 0), e.g. 0,1024,4096,16384",
    )
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    parser.add_argument("--n-prompt", type=int, default=512, help="prompt tokens (default 512)")
    parser.add_argument("--n-gen", type=int, default=128, help="generated tokens (default 128)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--ngl",
        "--n-gpu-layers",
        dest="ngl",
        type=int,
        default=None,
        help="layers on the GPU (default: all on a GPU build, else 0)",
    )
    where.add_argument(
        "--n-cpu-moe",
        type=int,
        default=0,
        help="keep the experts of the first N blocks on the CPU (MoE models)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per point")
    parser.set_defaults(func=run)


def point_record(ev: Point, sp: SweepPlan, model: Path) -> dict[str, Any]:
    """One measured point as a JSON object: llama-bench's jsonl fields and the prediction."""
    test = ev.series[:2]
    n_tok = int(ev.extra.get("n_tokens", 0))
    samples = [int(t) for t in ev.extra.get("samples_ns", [])]
    predicted = sp.predicted.get(int(ev.x), (0.0, 0.0))[0 if test == "tg" else 1]
    rec: dict[str, Any] = {
        "model": str(model),
        "test": f"{test}{n_tok}",
        "n_prompt": n_tok if test == "pp" else 0,
        "n_gen": n_tok if test == "tg" else 0,
        "n_depth": int(ev.x),
        "avg_ts": ev.y,
        "stddev_ts": ev.err,
        "samples_ns": samples,
        "samples_ts": [1e9 * n_tok / t for t in samples if t > 0],
        "predicted_ts": predicted or None,
    }
    if predicted and ev.y:
        rec["predicted_error"] = predicted / ev.y - 1.0
    return rec


def _text(rec: dict[str, Any]) -> str:
    at = f" @ d{rec['n_depth']}" if rec["n_depth"] else ""
    sd = rec["stddev_ts"] or 0.0
    line = f"{rec['test'] + at:>16}  {rec['avg_ts']:10.2f} ± {sd:7.2f} t/s"
    if rec.get("predicted_ts"):
        line += f"   predicted {rec['predicted_ts']:10.2f} ({100 * rec['predicted_error']:+.0f}%)"
    return line


def run(args: argparse.Namespace) -> int:
    try:
        depths = parse_depths(args.depth)
        if args.n_prompt < 0 or args.n_gen < 0 or args.n_prompt + args.n_gen == 0:
            raise QuantLensError(
                "Nothing to measure: --n-prompt and --n-gen are both 0 (or negative).",
                "Use the defaults (512 and 128) or positive counts.",
            )
        report, offload = this_machine()
        sp = check_sweep(
            args.model,
            depths,
            args.reps,
            args.threads or None,
            args.ngl,
            args.n_cpu_moe,
            report,
            offload,
            args.n_prompt,
            args.n_gen,
        )
    except QuantLensError as exc:
        print(f"error: {exc.message} {exc.hint}".rstrip(), file=sys.stderr)
        return 2
    params = sweep_params(
        args.model,
        depths,
        args.reps,
        args.threads or None,
        args.ngl,
        args.n_cpu_moe,
        args.n_prompt,
        args.n_gen,
    )
    if not args.json:
        print(
            f"{args.model.name}: {sp.where}, {args.reps} repetitions per point, depths "
            f"{', '.join(str(d) for d in depths)}",
            flush=True,
        )
    rec = EvalRecorder(args.model, params)
    rec.begin()
    job = Job(JobSpec("speed_sweep", params))
    terminal = None
    try:
        for ev in job.events():
            rec.add(ev)
            if isinstance(ev, Point) and ev.series in ("pp_depth", "tg_depth"):
                line = point_record(ev, sp, args.model)
                print(json.dumps(line) if args.json else _text(line), flush=True)
            elif isinstance(ev, (Finished, Failed, Cancelled)):
                terminal = ev
    except KeyboardInterrupt:
        job.cancel()
        rec.add(Cancelled(partial=rec.partial_result()))
        terminal = Cancelled()
    finally:
        rec.finish()
    if isinstance(terminal, Failed):
        print(f"error: {terminal.message} {terminal.hint}".rstrip(), file=sys.stderr)
        return 1
    if rec.result.get("partial"):
        print("stopped: the points measured so far are kept (partial run)", file=sys.stderr)
        return 130
    return 0
