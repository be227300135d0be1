"""``quantlens plan MODEL``: which quantization fits the GPUs, and how well it runs."""

from __future__ import annotations

import argparse
import json
import os
import sys

from qtapp.core.errors import QuantLensError
from qtapp.core.fit.devices import (
    MIB,
    host_device,
    overhead_text,
    parse_gpu_spec,
    probe_devices,
)
from qtapp.core.fit.host_memory import LOAD_MODES, HostLoad, HostRepack, host_memory_text
from qtapp.core.fit.kv_model import KV_TYPES, ContextSettings
from qtapp.core.fit.measured_speed import speed_caption, speed_text
from qtapp.core.fit.plan import Plan, PlanInputs, make_plan, targets_for
from qtapp.core.fit.plan_checks import PlanCheck, plan_checks_text
from qtapp.core.fit.quality_order import METRIC_NAMES
from qtapp.core.fit.quants import QUANT_TYPES, RECIPES, resolve_target
from qtapp.core.fit.sources import read_plan_sources, what_if_host


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "plan",
        help="predict memory per quant type and recommend one that fits",
        description="Predict weights, KV cache and compute memory per device for "
        "every llama.cpp quant type and recipe, and recommend the best that fits.",
    )
    p.add_argument(
        "model",
        help="a GGUF file (any shard of a split model), or hf://owner/name[/FILE.gguf] to plan "
        "a Hugging Face repo's files from their headers (with --online)",
    )
    p.add_argument("--ctx", type=int, default=4096, help="context length (default 4096)")
    p.add_argument("--kv", default="f16", choices=KV_TYPES, help="KV cache type (K and V)")
    p.add_argument(
        "--gpus",
        default=None,
        help='what-if GPUs, e.g. "2x48GiB" or "24GiB,12GiB" (default: the real ones)',
    )
    p.add_argument("--ram", default=None, help='what-if host RAM, e.g. "256GiB"')
    p.add_argument(
        "--ngl",
        type=int,
        default=None,
        help="evaluate this many GPU layers instead of choosing (-1 = all)",
    )
    p.add_argument(
        "--load-mode",
        default="mmap",
        choices=LOAD_MODES,
        help="how llama.cpp will load the weights (its --load-mode; default mmap)",
    )
    p.add_argument(
        "--no-repack",
        action="store_true",
        help="plan for llama.cpp's --no-repack (no repacked copies of CPU weights)",
    )
    p.add_argument("--margin", type=int, default=1024, help="free VRAM kept per GPU, MiB")
    p.add_argument("--batch", type=int, default=2048, help="n_batch (default 2048)")
    p.add_argument("--ubatch", type=int, default=512, help="n_ubatch (default 512)")
    p.add_argument(
        "--types",
        default=None,
        help="comma-separated quant types, recipes or your saved recipes (default: all)",
    )
    p.add_argument(
        "--published-order",
        action="store_true",
        help="rank types by llama.cpp's published order even when you have measured them",
    )
    p.add_argument(
        "--fast", action="store_true", help="instant estimates only; skip llama.cpp's dry runs"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--online", action="store_true", help="allow reading an hf:// repo's headers")
    p.set_defaults(func=run)


def _targets(text: str | None, inp: PlanInputs) -> list[str]:
    if not text:
        return targets_for(inp.model, inp.recipes, inp.quality)
    out = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        try:  # the same resolution as the window and the quantizer
            out.append(resolve_target(name, inp.recipes).name)
        except ValueError:
            raise QuantLensError(
                f"Unknown quant type or recipe {name!r}.",
                f"Known: {', '.join([*QUANT_TYPES, *RECIPES, *inp.recipes])}.",
            ) from None
    if not out:
        raise QuantLensError(f"--types {text!r} names no type.", "Write it like Q4_K_M,Q8_0.")
    return out


def build_inputs(args: argparse.Namespace) -> tuple[PlanInputs, list[str], list[PlanCheck]]:
    """The plan's inputs, its targets, and how far the user's own runs found past plans off."""
    cs = ContextSettings(
        n_ctx=args.ctx, type_k=args.kv, type_v=args.kv, n_batch=args.batch, n_ubatch=args.ubatch
    )
    cs.validate()
    if args.ngl is not None and args.ngl < -1:
        raise QuantLensError(
            f"--ngl {args.ngl} is out of range.", "Use -1 (all layers) or 0 and up."
        )
    if args.margin < 0:
        raise QuantLensError(f"--margin {args.margin} is negative.", "Use 0 MiB or more.")
    src = read_plan_sources(
        args.model,
        measured_quality=not getattr(args, "published_order", False),
        warm_up=False,
        warn=lambda text: print(f"warning: {text}", file=sys.stderr),
    )
    gpus = parse_gpu_spec(args.gpus) if args.gpus else probe_devices()
    host = what_if_host(host_device(), args.ram)
    inp = PlanInputs(
        src.model,
        cs,
        gpus,
        host,
        margin=args.margin * MIB,
        ngl=args.ngl,
        recipes=src.recipes,
        quality=src.quality,
        speeds=src.speeds,
        load=HostLoad(
            getattr(args, "load_mode", "mmap"),
            HostRepack() if getattr(args, "no_repack", False) else src.repack,
        ),
    )
    return inp, _targets(args.types, inp), src.checks


def add_exact(inp: PlanInputs, targets: list[str]) -> list[str]:
    """Swap in llama.cpp's exact figures (cached); returns warnings for the ones that failed.

    One child per core: the first makes the no-alloc load, then its share of the dry runs."""
    from concurrent.futures import ThreadPoolExecutor

    from qtapp.core.fit import exact as fit_exact
    from qtapp.core.jobs.job import run_job

    m, cs = inp.model, inp.settings
    warnings: list[str] = []
    many = fit_exact.ManyWeights(m, targets, inp.recipes)
    memory = fit_exact.cached_memory(m, cs)
    load = fit_exact.memory_params(m, cs) if memory is None else None
    specs = many.specs(max(1, min(4, os.cpu_count() or 1)), memory=load)
    jobs = [(spec.kind, spec.params) for spec in specs]
    if not jobs and load is not None:  # every weight cached: the load alone
        jobs = [("dry_load", load)]
    memory_error = ""
    failed: QuantLensError | None = None
    with ThreadPoolExecutor(max(1, len(jobs)), thread_name_prefix="plan-exact") as pool:
        futures = [pool.submit(run_job, kind, **params) for kind, params in jobs]
        for (kind, _), future in zip(jobs, futures, strict=True):
            try:
                result = future.result()
            except QuantLensError as exc:
                failed = exc
                continue
            if kind == "dry_load":
                result = {"memory": result}
            many.take(result)
            if "memory" in result:
                memory = fit_exact.store_memory(m, cs, result["memory"])
            memory_error = result.get("memory_error", memory_error)
    if failed is not None:
        warnings.append(f"exact weights unavailable ({failed.message}); showing estimates")
    warnings += [f"{t}: {e}" for t, e in many.errors.items()]
    inp.weights.update(many.weights)
    if memory is not None:
        inp.exact[cs] = memory
    else:
        why = memory_error or (failed.message if failed is not None else "no result")
        warnings.append(f"exact KV / compute unavailable ({why}); showing estimates")
    return warnings


def _gib(b: float) -> str:
    return f"{b / 1024**3:7.2f}"


def format_table(plan: Plan, checks: list[PlanCheck] | None = None) -> str:
    m = plan.model
    lines = [
        f"{m.name} ({m.architecture}, {m.n_params / 1e9:.2f}B params"
        + (f", {m.n_params_active / 1e9:.2f}B active" if m.is_moe else "")
        + f", {m.n_layer} layers, file {m.file_type})",
        "Settings: ctx {n_ctx}, KV {type_k}/{type_v}, n_batch {n_batch}, n_ubatch {n_ubatch}, "
        "swa_full {swa_full}, flash attention {flash_attn}".format(**plan.settings.to_dict()),
        "Devices: "
        + ", ".join(
            f"{d.name} {d.free_bytes / 1024**3:.1f} GiB free"
            if d.is_gpu
            else f"CPU {d.free_bytes / 1024**3:.1f} GiB RAM available"
            for d in plan.devices
        )
        + f" (margin {plan.margin // MIB} MiB per GPU)",
        "Quality order: "
        + (
            f"your measurements ({plan.quality.describe(plan.quality.measured)}), "
            "llama.cpp's published order for the rest"
            if plan.quality.source == "measured"
            else "llama.cpp's published order"
        ),
        "",
    ]
    devs = [d.name for d in plan.devices]
    tw = max([9, *(len(r.type) for r in plan.rows)])
    head = f"{'type':<{tw}} {'bpw':>5} {'weights':>8} " + " ".join(f"{d:>8}" for d in devs)
    head += f" {'ngl':>4} {'verdict':<8} {'tg t/s':>7} {'pp t/s':>8}  note"
    lines += [head + "   (GiB; * = exact from llama.cpp)", "-" * len(head)]
    for r in plan.rows:
        star = "*" if r.weights_exact else " "
        cells = " ".join(_gib(u.total_bytes) + ("*" if r.memory_exact else " ") for u in r.devices)
        tag = " (imatrix)" if r.needs_imatrix else ""
        tag += " (your recipe)" if r.user_recipe else ""
        if r.measured_quality is not None:
            tag += f" (measured {METRIC_NAMES[plan.quality.metric]} {r.measured_quality:.4g})"
        lines.append(
            f"{r.type:<{tw}} {r.bpw:5.2f} {_gib(r.weights_bytes)}{star}{cells} "
            f"{r.n_gpu_layers:>4} {r.verdict:<8} {speed_text(r, 'tg'):>7} "
            f"{speed_text(r, 'pp'):>8}  {r.note}{tag}"
        )
    lines += ["", speed_caption(plan)]
    rec = plan.row(plan.recommended) if plan.recommended else None
    shown = rec or plan.rows[0]
    lines += ["", host_memory_text(plan.load, shown.type, shown.devices[-1])]
    if checks:
        lines += ["", plan_checks_text(checks)]
    if any(d.is_gpu for d in plan.devices):
        lines += ["", overhead_text(plan.devices) + "."]
    lines += [
        "",
        f"Recommended: {plan.recommended or 'none'}"
        + (f" (context up to {plan.recommended_ctx:,})" if plan.recommended_ctx else ""),
        plan.why,
    ]
    if rec is not None and rec.llama_args:
        cs = plan.settings
        kv = f" -ctk {cs.type_k} -ctv {cs.type_v}" if cs.type_k != "f16" else ""
        lines.append(
            f"llama.cpp placement: llama-server -m <{rec.type} file> -c {cs.n_ctx}{kv} "
            f"{rec.llama_args}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from qtapp.core.remote.source import is_remote

    if is_remote(args.model):
        from qtapp.cli.fetch_cmd import run_remote_plan

        return run_remote_plan(args, build_inputs)
    try:
        inp, targets, checks = build_inputs(args)
        warnings = [] if args.fast else add_exact(inp, targets)
        plan = make_plan(inp, targets)
    except QuantLensError as exc:
        # one line: scripts and people both read the first line of stderr
        print(f"error: {exc.message} {exc.hint}".rstrip(), file=sys.stderr)
        return 2
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        out = plan.to_dict()
        out["plan_checks"] = [
            {"device": c.device, "planned_and_measured_bytes": c.pairs} for c in checks
        ]
        print(json.dumps(out, indent=1))
    else:
        print(format_table(plan, checks))
    return 0
