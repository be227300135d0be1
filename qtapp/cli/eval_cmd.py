"""``quantlens eval MODEL``: perplexity, KL divergence against a base, and speed.

Per-chunk values print as they arrive (``--json``: one JSON object per chunk and one per speed
repetition, then a final object). Ctrl+C stops the job and prints what was measured so far,
marked partial. The run is stored in the results database.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.checks import check_eval_inputs
from qtapp.core.evaluate.runs import EvalRecorder, eval_params
from qtapp.core.jobs.events import Cancelled, Failed, Finished, Point, Progress
from qtapp.core.jobs.job import Job, JobSpec

FINAL_KEYS = (
    "ppl",
    "ppl_err",
    "bpb",
    "bpb_err",
    "text_bytes",
    "tokens",
    "chunks_done",
    "n_chunks",
    "ctx",
    "kld_mean",
    "kld_mean_err",
    "kld_median",
    "kld_p99",
    "kld_p999",
    "kld_max",
    "same_top_pct",
    "dp_rms",
    "ppl_ratio",
    "ppl_ratio_err",
    "ppl_base",
    "pp_tps",
    "pp_tps_sd",
    "tg_tps",
    "tg_tps_sd",
    "reps",
    "eval_s",
    "partial",
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "eval",
        help="perplexity, KL divergence and speed of a GGUF model",
        description="Evaluate MODEL as llama-perplexity does (context 512, second half of each "
        "chunk scored), optionally its KL divergence against --base, and its speed as "
        "llama-bench measures it (pp512, tg128).",
    )
    parser.add_argument("model", type=Path, help="the .gguf to evaluate")
    parser.add_argument("--base", type=Path, help="reference model for KL divergence (F16/BF16)")
    parser.add_argument("--text", type=Path, help="evaluation text (default: the bundled text)")
    parser.add_argument("--ctx", type=int, default=512, help="context per chunk (default 512)")
    parser.add_argument("--chunks", type=int, default=None, help="chunks to evaluate (default all)")
    parser.add_argument("--speed", action="store_true", help="also measure pp512 and tg128")
    parser.add_argument("--reps", type=int, default=5, help="speed repetitions (default 5)")
    parser.add_argument(
        "--depth",
        default=None,
        help="with --speed: measure at these context depths, e.g. 0,1024,4096 (llama-bench -d)",
    )
    parser.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    parser.add_argument(
        "--n-gpu-layers",
        type=int,
        default=None,
        help="layers to offload (default: all on a GPU build, else 0)",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines instead of text")
    parser.set_defaults(func=run)


def _fmt(v: Any, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _chunk_line(p: Point, last: dict[str, Point], has_base: bool, as_json: bool) -> str:
    chunk = int(p.extra.get("chunk", 0))
    row: dict[str, Any] = {"chunk": chunk, "tokens": int(p.x), "ppl": p.y, "ppl_err": p.err}
    k = last.get("kld")
    if has_base and k is not None and int(k.x) == chunk:
        row["kld"] = k.y
        kr = last.get("kld_running")
        if kr is not None:
            row.update(kld_mean=kr.y, kld_mean_err=kr.err)
        st = last.get("same_top")
        if st is not None:
            row["same_top_pct"] = st.y
    if as_json:
        return json.dumps(row)
    text = f"[{chunk:4d}] PPL {_fmt(p.y)} ± {_fmt(p.err)}"
    if "kld" in row:
        text += f"   KLD {_fmt(row['kld'], 6)} (mean {_fmt(row.get('kld_mean'), 6)})"
        text += f"   same top {_fmt(row.get('same_top_pct'), 2)}%"
    return text


def _final_text(r: dict[str, Any]) -> list[str]:
    lines = [
        f"PPL = {_fmt(r.get('ppl'))} +/- {_fmt(r.get('ppl_err'), 5)} "
        f"over {r.get('tokens', 0)} tokens"
    ]
    if "bpb" in r:
        lines.append(
            f"Bits per byte = {_fmt(r['bpb'], 5)} +/- {_fmt(r.get('bpb_err'), 5)} "
            f"over {r.get('text_bytes', 0)} bytes (compares models with different tokenizers)"
        )
    if "kld_mean" in r:
        lines += [
            f"Mean KLD = {_fmt(r['kld_mean'], 6)} ± {_fmt(r.get('kld_mean_err'), 6)}   "
            f"median {_fmt(r.get('kld_median'), 6)}   99% {_fmt(r.get('kld_p99'), 6)}   "
            f"99.9% {_fmt(r.get('kld_p999'), 6)}   max {_fmt(r.get('kld_max'), 6)}",
            f"Same top token = {_fmt(r.get('same_top_pct'), 3)} %   "
            f"RMS Δp = {_fmt(100 * r.get('dp_rms', float('nan')), 3)} %   "
            f"PPL(Q)/PPL(base) = {_fmt(r.get('ppl_ratio'), 6)} ± {_fmt(r.get('ppl_ratio_err'), 6)}",
        ]
    if "pp_tps" in r:
        lines.append(
            f"pp{r.get('n_prompt', 512)} = {_fmt(r['pp_tps'], 2)} ± "
            f"{_fmt(r.get('pp_tps_sd'), 2)} t/s   tg{r.get('n_gen', 128)} = "
            f"{_fmt(r.get('tg_tps'), 2)} ± {_fmt(r.get('tg_tps_sd'), 2)} t/s "
            f"({r.get('reps')} reps)"
        )
    if r.get("partial"):
        lines.append("(partial: the run was stopped before the end)")
    return lines


def _error(message: str, hint: str = "") -> None:
    """One line on stderr: what is wrong and what to do."""
    print(f"error: {message} {hint}".rstrip(), file=sys.stderr)


def _predicted_memory(model: str, params: dict[str, Any]) -> dict[str, int]:
    """What the planner predicted per device for this run, stored with it (the window stores
    the same from its memory panel), so the Fit page can say how far plans were off."""
    from qtapp.core.evaluate.memory import plan_for_run, predicted_metrics
    from qtapp.core.fit.devices import probe_devices

    gpus = probe_devices()
    report = None
    if gpus:
        from qtapp.core.hardware.probe import probe_hardware

        report = probe_hardware()
    return predicted_metrics(plan_for_run(model, params, report)[0])


def run(args: argparse.Namespace) -> int:
    try:
        check_eval_inputs(
            args.model,
            args.base,
            args.text,
            args.ctx,
            args.chunks,
            args.reps if args.speed else 1,
            args.threads,
            args.n_gpu_layers,
        )
        depths = None
        if args.speed and args.depth:
            from qtapp.core.evaluate import speed_sweep as sw

            depths = sw.parse_depths(args.depth)
            report, offload = sw.this_machine()
            sw.check_sweep(
                args.model, depths, args.reps, args.threads or None, args.n_gpu_layers, 0,
                report, offload,
            )  # fmt: skip
    except QuantLensError as exc:
        _error(exc.message, exc.hint)
        return 2
    params = eval_params(
        args.model,
        args.base,
        args.text,
        args.ctx,
        args.chunks,
        args.speed,
        args.threads or None,
        args.n_gpu_layers,
        args.reps,
        depths,
    )
    rec = EvalRecorder(args.model, params)
    rec.begin()
    job = Job(JobSpec("evaluate", params))
    out = sys.stdout
    terminal = None
    try:
        for ev in job.events():
            rec.add(ev)
            if isinstance(ev, Point):
                if ev.series == "ppl":
                    print(
                        _chunk_line(ev, rec.last, args.base is not None, args.json),
                        file=out,
                        flush=True,
                    )
                elif ev.series in ("pp_tps", "tg_tps"):
                    name = "pp" if ev.series == "pp_tps" else "tg"
                    if args.json:
                        print(
                            json.dumps({"speed": name, "rep": int(ev.x), "tps": ev.y}),
                            file=out,
                            flush=True,
                        )
                    else:
                        print(f"  {name} run {int(ev.x)}: {ev.y:.2f} t/s", file=out, flush=True)
                elif ev.series in ("pp_depth", "tg_depth") and depths:
                    name, sd = ev.series[:2], ev.err or 0.0
                    if args.json:
                        row = {"speed": name, "depth": int(ev.x), "tps": ev.y, "sd": ev.err}
                        print(json.dumps(row), file=out, flush=True)
                    else:
                        line = f"  {name} @ depth {int(ev.x)}: {ev.y:.2f} ± {sd:.2f} t/s"
                        print(line, file=out, flush=True)
            elif isinstance(ev, Progress) and not args.json and ev.detail.get("phase") == "base":
                print(f"  {ev.message}", file=sys.stderr, flush=True)
            elif isinstance(ev, (Finished, Failed, Cancelled)):
                terminal = ev
    except KeyboardInterrupt:
        job.cancel()
        rec.add(Cancelled(partial=rec.partial_result()))
        terminal = Cancelled()
    finally:
        rec.result.update(_predicted_memory(args.model, params))
        rec.finish()
    result = rec.result
    if isinstance(terminal, Failed) and not rec.series.get("ppl"):
        _error(terminal.message, terminal.hint)
        return 1
    final = {k: result[k] for k in FINAL_KEYS if k in result}
    if args.json:
        print(json.dumps({"final": True, "model": str(args.model), **final}), file=out)
    else:
        for line in _final_text(result):
            print(line, file=out)
    if isinstance(terminal, Failed):
        _error(terminal.message)
        return 1
    return 130 if result.get("partial") else 0
