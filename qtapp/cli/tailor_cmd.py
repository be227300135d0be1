"""``quantlens tailor MODEL (--budget SIZE | --gpus SPEC) --out DIR``: the best per-tensor mix
that fills a memory budget, measured.

Steps: the sensitivity scan (cached per model, calibration text and settings; its cost is
printed first), the knapsack, the recipe (saved as a user recipe, confirmed by llama.cpp's dry
run), then, unless ``--no-measure``, the recipe quantized into DIR and its KL divergence
measured on ``--text`` (not the calibration text), with the standard types of nearby size.
Progress goes to stderr; Ctrl+C stops at once and leaves no partial file.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.jobs.events import Event, Failed, Progress


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "tailor",
        help="the best per-tensor quant mix for your memory budget, measured",
        description="Measure how much each tensor group (layer band x tensor class) loses "
        "at each quant type, pick the least-loss mix that fits the budget (llama.cpp's exact "
        "sizes), save it as a recipe, then quantize and measure it against the standard "
        "types of nearby size.",
    )
    p.add_argument("model", type=Path, help="the full-precision model (F16/BF16/F32 .gguf)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--budget",
        help='the weights budget (the tensors\' bytes), e.g. "243MiB", "7.5GiB" or bytes',
    )
    where.add_argument(
        "--gpus",
        help="the GPUs the whole plan (weights, KV cache at --ctx/--kv, compute, overhead) "
        'must fit, e.g. "1x8GiB" or "24GiB,12GiB"',
    )
    p.add_argument("--ctx", type=int, default=4096, help="context for --gpus (default 4096)")
    p.add_argument("--kv", default="f16", help="KV cache type for --gpus (default f16)")
    p.add_argument(
        "--text", type=Path, help="evaluation text for the measured KLD (default: Genesis-Exodus)"
    )
    p.add_argument(
        "--calibration",
        type=Path,
        help="calibration text of the scan (default: the bundled Leviticus-Numbers)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the quantized files")
    p.add_argument("--name", help="recipe name (default: <model>-tailored-<budget>MiB)")
    p.add_argument("--bands", type=int, default=4, help="layer bands per tensor class (4)")
    p.add_argument(
        "--candidates", default=None, help="candidate types, default Q2_K,Q3_K,Q4_K,Q5_K,Q6_K"
    )
    p.add_argument("--scan-ctx", type=int, default=256, help="scan context (default 256)")
    p.add_argument("--scan-chunks", type=int, default=1, help="scan chunks (default 1)")
    p.add_argument("--eval-chunks", type=int, default=8, help="evaluation chunks (default 8)")
    p.add_argument("--no-measure", action="store_true", help="stop after saving the recipe")
    p.add_argument("--rescan", action="store_true", help="ignore a cached scan")
    p.add_argument("--requantize", action="store_true", help="allow an already quantized source")
    p.add_argument("--overwrite", action="store_true", help="replace files already in --out")
    p.add_argument("--threads", type=int, default=0, help="threads (0 = all cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _budget(text: str) -> int:
    from qtapp.core.fit.devices import parse_memory_size

    if text.strip().isdigit():
        return int(text)
    return parse_memory_size(text, "budget")


def _progress(event: Event, what: str, last: list[float]) -> None:
    if not isinstance(event, Progress):
        return
    pct = event.fraction * 100
    if pct - last[0] < 2 and event.fraction < 1.0:
        return
    last[0] = pct
    eta = event.detail.get("eta_s")
    tail = f" ETA {eta:.0f} s" if isinstance(eta, (int, float)) else ""
    print(f"{what} [{pct:5.1f}%] {event.message}{tail}", file=sys.stderr, flush=True)


def _check_paths(args: argparse.Namespace) -> None:
    if not args.model.is_file():
        raise QuantLensError(f"The model {args.model} does not exist.", "Give a .gguf file.")
    for flag, path in (("--text", args.text), ("--calibration", args.calibration)):
        if path is not None and not path.is_file():
            raise QuantLensError(f"{flag} {path} does not exist.", "Give a UTF-8 text file.")
    if args.out.exists() and not args.out.is_dir():
        raise QuantLensError(f"--out {args.out} is a file.", "Give a folder.")
    if args.eval_chunks < 1:
        raise QuantLensError("--eval-chunks must be 1 or more.", "The default is 8.")


def run(args: argparse.Namespace) -> int:
    from qtapp.core.app.paths import resources_dir
    from qtapp.core.gguf.model import read_model
    from qtapp.core.tailor import tailor as core
    from qtapp.core.tailor.scan import DEFAULT_CANDIDATES, ScanSettings, run_scan, scan_cost

    _check_paths(args)
    budget = _budget(args.budget) if args.budget else None
    m = read_model(args.model)
    candidates = (
        tuple(t.strip().upper() for t in args.candidates.split(",") if t.strip())
        if args.candidates
        else DEFAULT_CANDIDATES
    )
    settings = ScanSettings(
        candidates=candidates,
        bands=args.bands,
        ctx=args.scan_ctx,
        chunks=args.scan_chunks,
        text=str(args.calibration) if args.calibration else None,
        threads=args.threads,
    )
    eval_text = args.text or resources_dir() / "texts/kjv-genesis-exodus.txt"
    if eval_text.resolve() == settings.text_path().resolve():
        print(
            "warning: the evaluation text is the calibration text; the measured KLD will "
            "flatter the tailored mix",
            file=sys.stderr,
        )
    from qtapp.core.tailor.scan import check_source

    check_source(m, args.requantize)
    settings.validate()
    cost = scan_cost(m, settings)
    print(f"scan: {cost.describe()} (cached scans are free)", file=sys.stderr, flush=True)
    last = [-100.0]
    try:
        scan, terminal = run_scan(
            m,
            settings,
            args.requantize,
            on_event=lambda ev: _progress(ev, "scan", last),
            use_cache=not args.rescan,
        )
    except KeyboardInterrupt:
        print("tailor: cancelled, nothing written", file=sys.stderr)
        return 130
    if scan is None:
        if isinstance(terminal, Failed):
            raise QuantLensError(terminal.message, terminal.hint)
        print("tailor: cancelled, nothing written", file=sys.stderr)
        return 130
    inp = _plan_inputs(args) if args.gpus else None
    # the default name: <model>-tailored-<budget, or the GPUs' total>MiB
    t, saved = core.tailor_and_save(m, scan, budget=budget, inp=inp, name=args.name)
    out: dict[str, Any] = {
        "model": str(args.model),
        **t.to_dict(m.n_layer),
        "recipe_file": str(saved),
        "scan": {
            "evals": scan.evals,
            "seconds": scan.seconds,
            "cached": scan.cached,
            "reference_kld": scan.reference_kld,
        },
    }
    _say(args, f"recipe {t.recipe.name}: {t.bytes / 2**20:.2f} MiB of weights, predicted "
         f"mean KLD {t.solution.predicted_kld:.4f}; saved to {saved}")  # fmt: skip
    if not args.no_measure:
        try:
            _measure(args, m, t, eval_text, out)
        except KeyboardInterrupt:
            print("tailor: cancelled; no partial file left in --out", file=sys.stderr)
            return 130
    print(json.dumps(out, indent=1) if args.json else _text(out))
    return 0


def _say(args: argparse.Namespace, text: str) -> None:
    print(f"tailor: {text}", file=sys.stderr, flush=True)


def _measure(args: argparse.Namespace, m: Any, t: Any, text: Path, out: dict[str, Any]) -> None:
    from qtapp.core.tailor.measure import measure, nearby, standard_sizes

    args.out.mkdir(parents=True, exist_ok=True)
    sizes = standard_sizes(m)
    last = [-100.0]
    common = {
        "out_dir": args.out,
        "text": text,
        "chunks": args.eval_chunks,
        "requantize": args.requantize,
        "overwrite": args.overwrite,
        "threads": args.threads,
        "on_event": lambda ev: _progress(ev, "measure", last),
    }
    _say(args, f"quantizing and measuring {t.recipe.name}")
    out["measured"] = measure(m, t.recipe.name, recipe=t.recipe, **common)
    out["nearby"] = []
    for std in nearby(sizes, t.bytes):
        _say(args, f"quantizing and measuring {std} ({sizes[std] / 2**20:.2f} MiB)")
        out["nearby"].append({"weights_bytes": sizes[std], **measure(m, std, **common)})


def _plan_inputs(args: argparse.Namespace) -> Any:
    """The Fit page's inputs for these GPUs, parsed and sized exactly as ``quantlens plan``."""
    from qtapp.cli.plan_cmd import add_exact, build_inputs

    ns = argparse.Namespace(
        model=str(args.model),
        ctx=args.ctx,
        kv=args.kv,
        gpus=args.gpus,
        ram=None,
        ngl=None,
        load_mode="mmap",
        no_repack=False,
        margin=1024,
        batch=2048,
        ubatch=512,
        types=None,
        published_order=True,
    )
    inp, _targets, _checks = build_inputs(ns)
    for w in add_exact(inp, []):
        print(f"warning: {w}", file=sys.stderr)
    return inp


def _text(out: dict[str, Any]) -> str:
    lines = [
        f"Recipe {out['recipe']} (base {out['base']}): {out['bytes'] / 2**20:.2f} MiB of weights "
        f"(budget {out['budget_bytes'] / 2**20:.2f} MiB), predicted mean KLD "
        f"{out['predicted_kld']:.4f}",
        "llama-quantize " + shlex.join(out["tensor_type_args"]) + f" MODEL OUT {out['base']}",
    ]
    meas = out.get("measured")
    if meas:
        lines.append(
            f"Measured: mean KLD {meas.get('kld_mean', float('nan')):.4f}, 99% KLD "
            f"{meas.get('kld_p99', float('nan')):.4f}, file {meas['bytes'] / 2**20:.2f} MiB"
        )
    for n in out.get("nearby", []):
        lines.append(
            f"  {n['target']:<8} {n['weights_bytes'] / 2**20:8.2f} MiB  mean KLD "
            f"{n.get('kld_mean', float('nan')):.4f}  99% KLD {n.get('kld_p99', float('nan')):.4f}"
        )
    return "\n".join(lines)
