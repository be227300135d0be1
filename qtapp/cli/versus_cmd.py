"""``quantlens versus A B [C ...] --tasks FILE``: model vs model on task accuracy at a budget.

Each file's fit at the budget comes from the planner (the file as it is, at ``--plan-ctx``);
its task accuracy from the results store when a complete run on the same task file exists,
else it is scored now, as ``quantlens tasks`` does. Then, for every pair, the paired difference
on the tasks both answered and one sentence of verdict.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.results.versus import (
    TaskScore,
    paired_diff,
    task_scores,
    task_set_name,
    verdict,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "versus",
        help="model vs model: task accuracy, paired differences and a verdict at a budget",
        description="Compare GGUF files on the same task file: each file's fit at a memory "
        "budget, its accuracy with a 95%% interval, and for each pair the paired difference "
        "on the tasks both answered (McNemar's exact test) with one sentence of verdict. "
        "Scores already in the results store for the same file and task file are reused.",
    )
    p.add_argument("models", nargs="+", type=Path, help="two or more .gguf files")
    p.add_argument("--tasks", type=Path, required=True, help="a task file (as for `tasks`)")
    p.add_argument(
        "--kind",
        default=None,
        help="task format: hellaswag, winogrande or mc (default: read from the file)",
    )
    p.add_argument("--limit", type=int, default=400, help="tasks to score (default 400)")
    p.add_argument("--ctx", type=int, default=512, help="context per task ending (default 512)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--budget", default=None, help='memory to fit into, e.g. "2x48GiB" (same as --gpus)'
    )
    where.add_argument("--gpus", default=None, help='what-if GPUs, e.g. "2x48GiB" or "24GiB"')
    p.add_argument(
        "--plan-ctx", type=int, default=4096, help="context the fit is planned for (default 4096)"
    )
    p.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    p.add_argument(
        "--rescore", action="store_true", help="score again even when the store has a score"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _stored_score(path: Path, params: dict[str, Any]) -> TaskScore | None:
    """The newest complete run of this file on this task set with enough tasks."""
    from qtapp.core.gguf.fingerprint import fingerprint
    from qtapp.core.results.store import ResultsStore

    try:
        fp = fingerprint(path)
        with ResultsStore.open() as store:
            runs = store.list_runs(kind="tasks")
    except Exception:  # noqa: BLE001 - no store: score afresh
        return None
    want = (params.get("kind") or "hellaswag", params["tasks_sha256"])
    found = [
        s
        for s in task_scores(runs)
        if s.fingerprint == fp and s.task_set == want and not s.partial
        and s.n >= int(params["limit"])
    ]  # fmt: skip
    return max(found, key=lambda s: s.created, default=None)


def _score(path: Path, params: dict[str, Any], quiet: bool) -> TaskScore:
    """Score now, recorded in the store like ``quantlens tasks``; progress on stderr."""
    from qtapp.core.evaluate.runs import EvalRecorder
    from qtapp.core.jobs.events import Cancelled, Failed, Finished, Progress
    from qtapp.core.jobs.job import Job, JobSpec

    rec = EvalRecorder(path, params, kind="tasks")
    rec.begin()
    job = Job(JobSpec("tasks", params))
    failed: Failed | None = None
    try:
        for ev in job.events():
            rec.add(ev)
            if isinstance(ev, Progress) and not quiet:
                print(f"\r{path.name}: {ev.message}   ", end="", file=sys.stderr, flush=True)
            elif isinstance(ev, Failed):
                failed = ev
            elif isinstance(ev, (Finished, Cancelled)):
                pass
    except KeyboardInterrupt:
        job.cancel()
        rec.add(Cancelled(partial={"partial": True}))
        raise
    finally:
        rec.finish()
        if not quiet:
            print(file=sys.stderr)
    if failed is not None:
        raise QuantLensError(f"{path.name}: {failed.message}", failed.hint)
    r = rec.result
    from qtapp.core.gguf.fingerprint import model_info

    m = model_info(path)  # the name and fingerprint the store keeps
    return TaskScore(
        run_id=rec.run_id or 0,
        model=m.name,
        label=rec.label or _label(path),
        path=str(path),
        fingerprint=m.fingerprint,
        kind=str(params.get("kind") or "hellaswag"),
        tasks_sha256=params["tasks_sha256"],
        tasks_file=str(params["tasks"]),
        answers=str(r.get("answers", "")),
        partial=bool(r.get("partial")),
        created=0.0,
    )


def _label(path: Path) -> str:
    from qtapp.core.evaluate.runs import quant_label

    return quant_label(path)


def _fit(path: Path, gpus_spec: str | None, plan_ctx: int) -> dict[str, Any]:
    """The file as it is, planned at the budget: verdict, memory per device, GPU layers."""
    from qtapp.cli.plan_cmd import add_exact
    from qtapp.core.fit.devices import host_device, parse_gpu_spec, probe_devices
    from qtapp.core.fit.host_memory import HostLoad
    from qtapp.core.fit.kv_model import ContextSettings
    from qtapp.core.fit.plan import PlanInputs, make_plan
    from qtapp.core.fit.sources import read_plan_sources

    src = read_plan_sources(path, warm_up=False)
    gpus = parse_gpu_spec(gpus_spec) if gpus_spec else probe_devices()
    inp = PlanInputs(
        src.model,
        ContextSettings(n_ctx=plan_ctx),
        gpus,
        host_device(),
        recipes=src.recipes,
        quality=src.quality,
        speeds=src.speeds,
        load=HostLoad("mmap", src.repack),
    )
    warnings = add_exact(inp, [])
    row = make_plan(inp, targets=["Q8_0"]).rows[0]  # rows[0]: the file as it is
    gib = 1024**3
    return {
        "verdict": row.verdict,
        "n_gpu_layers": row.n_gpu_layers,
        "devices": {d.device: round(d.total_bytes / gib, 3) for d in row.devices if d.total_bytes},
        "exact": row.memory_exact,
        "warnings": warnings,
        "budget": gpus_spec or ", ".join(g.name for g in gpus) or "no GPU (CPU only)",
    }


def _store_verdict(
    args: argparse.Namespace,
    scores: list[TaskScore],
    entries: list[dict[str, Any]],
    pairs: list[dict[str, Any]],
    budget: str | None,
) -> None:
    """Keep the verdict in the results store (kind "versus"), next to the scores it used."""
    from qtapp.core.results.store import ResultsStore

    try:
        with ResultsStore.open() as store:
            run_id = store.begin_run(
                "versus",
                scores[0].path,
                " vs ".join(f"{s.model} {s.label}" for s in scores),
                settings={
                    "models": [s.path for s in scores],
                    "tasks": str(args.tasks),
                    "tasks_sha256": scores[0].tasks_sha256,
                    "kind": scores[0].kind,
                    "budget": budget,
                    "plan_ctx": args.plan_ctx,
                },
            )
            store.finish_run(run_id, "finished", {"models": entries, "pairs": pairs})
    except Exception as exc:  # noqa: BLE001 - the verdict is printed even without a store
        print(f"warning: the verdict was not stored: {exc}", file=sys.stderr)


FIT_WORDS = {"fits": "fits", "no": "does not fit"}


def run(args: argparse.Namespace) -> int:
    from qtapp.cli.tasks_cmd import task_params

    if len(args.models) < 2:
        raise QuantLensError("versus needs two or more model files.", "Give A.gguf B.gguf.")
    budget = args.budget or args.gpus
    entries: list[dict[str, Any]] = []
    scores: list[TaskScore] = []
    for path in args.models:
        ns = argparse.Namespace(
            model=path, tasks=args.tasks, kind=args.kind, limit=args.limit, ctx=args.ctx,
            threads=args.threads, n_gpu_layers=None,
        )  # fmt: skip
        params = task_params(ns)
        stored = None if args.rescore else _stored_score(path, params)
        score = stored or _score(path, params, quiet=args.json)
        if score.partial or not score.n:
            raise QuantLensError(f"{path.name} was not scored to the end.", "Run it again.")
        scores.append(score)
        fit = _fit(path, budget, args.plan_ctx)
        entries.append({**score.to_dict(), "reused": stored is not None, "fit": fit})
    pairs = []
    for (i, a), (j, b) in itertools.combinations(enumerate(scores), 2):
        d = paired_diff(a.answers, b.answers)
        pairs.append({"a": i, "b": j, **d.to_dict(), "verdict": verdict(a, b, d)})
    n_common = min(s.n for s in scores)
    _store_verdict(args, scores, entries, pairs, budget)
    if args.json:
        print(json.dumps({"tasks": task_set_name(scores[0], n_common), "models": entries,
                          "pairs": pairs}))  # fmt: skip
        return 0
    print(f"Tasks: {task_set_name(scores[0], n_common)}")
    print(f"Budget: {entries[0]['fit']['budget']} (fit planned at context {args.plan_ctx})")
    for k, (e, s) in enumerate(zip(entries, scores, strict=True)):
        lo, hi = s.interval()
        where = ", ".join(f"{n} {g:.2f} GiB" for n, g in e["fit"]["devices"].items())
        fit = e["fit"]
        words = FIT_WORDS.get(fit["verdict"], fit["verdict"])
        if fit["verdict"] == "partial":
            words = f"fits with {fit['n_gpu_layers']} layers on the GPUs, the rest on the CPU"
        print(
            f"  {chr(65 + k)}  {Path(s.path).name}: {s.model} at {s.label}, "
            f"{words} ({where}); "
            f"{s.correct}/{s.n} = {s.acc:.2f}% (95% CI {lo:.1f} to {hi:.1f})"
            + (f" [stored run #{s.run_id}]" if e["reused"] else "")
        )
    for pair in pairs:
        print(f"  {chr(65 + pair['a'])} vs {chr(65 + pair['b'])}: {pair['verdict']}"
              f" McNemar p = {pair['mcnemar_p']:.3g}.")  # fmt: skip
    return 0
