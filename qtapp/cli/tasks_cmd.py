"""``quantlens tasks MODEL --tasks FILE``: task accuracy as ``llama-perplexity`` scores it."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.runs import EvalRecorder
from qtapp.core.evaluate.tasks import KIND_NAMES, chosen_tasks, detect_task_kind
from qtapp.core.jobs.events import Cancelled, Failed, Finished, Point
from qtapp.core.jobs.job import Job, JobSpec


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "tasks",
        help="task accuracy (HellaSwag, Winogrande, multiple choice) of a GGUF model, as "
        "llama-perplexity scores it",
        description="Score MODEL on a task file as `llama-perplexity` does (--hellaswag, "
        "--winogrande or --multiple-choice with --*-tasks LIMIT): the same tasks in the same "
        "order, the same scoring, with a 95% interval. The files are the formats llama.cpp "
        "reads: HellaSwag text (six lines per task), Winogrande CSV, multiple-choice binary "
        "(ARC, MMLU, TruthfulQA, HellaSwag). Where the standard sets come from: llama.cpp's "
        "tools/perplexity README, and the Hugging Face datasets "
        "ikawrakow/winogrande-eval-for-llama.cpp and "
        "ikawrakow/validation-datasets-for-llama.cpp.",
    )
    parser.add_argument("model", type=Path, help="the .gguf to score")
    parser.add_argument(
        "--tasks", type=Path, required=True, help="a HellaSwag, Winogrande or multiple-choice file"
    )
    parser.add_argument(
        "--kind",
        default=None,
        choices=("hellaswag", "winogrande", "mc"),
        help="task format (default: detected from the file's content)",
    )
    parser.add_argument("--limit", type=int, default=400, help="tasks to score (default 400)")
    parser.add_argument("--ctx", type=int, default=512, help="context per ending (default 512)")
    parser.add_argument("--threads", type=int, default=0, help="threads (default: all cores)")
    parser.add_argument(
        "--n-gpu-layers", type=int, default=None, help="layers to offload (default as eval)"
    )
    parser.add_argument("--json", action="store_true", help="JSON lines instead of text")
    parser.set_defaults(func=run)


def task_params(args: argparse.Namespace) -> dict[str, Any]:
    """Check the inputs here (one clear line for a bad file) and build the job's params."""
    from qtapp.core.evaluate.checks import check_eval_inputs

    if args.limit < 1:
        raise QuantLensError(f"--limit {args.limit} is out of range.", "Use 1 or more tasks.")
    check_eval_inputs(args.model, ctx=args.ctx, threads=args.threads or None)
    kind = args.kind or detect_task_kind(args.tasks)
    chosen = chosen_tasks(args.tasks, kind, args.limit)
    digest = hashlib.sha256(args.tasks.read_bytes()).hexdigest()[:16]
    params: dict[str, Any] = {
        "model": str(args.model),
        "tasks": str(args.tasks),
        "kind": kind,
        "limit": len(chosen),
        "ctx": args.ctx,
        # runs on different task sets are never compared: the file's fingerprint keys them
        "tasks_sha256": digest,
    }
    if args.threads:
        params["threads"] = args.threads
    if args.n_gpu_layers is not None:
        params["n_gpu_layers"] = args.n_gpu_layers
    return params


def run(args: argparse.Namespace) -> int:
    try:
        params = task_params(args)
    except QuantLensError as exc:
        print(f"error: {exc.message} {exc.hint}".rstrip(), file=sys.stderr)
        return 2
    rec = EvalRecorder(args.model, params, kind="tasks")
    rec.begin()
    job = Job(JobSpec("tasks", params))
    terminal = None
    try:
        for ev in job.events():
            rec.add(ev)
            if isinstance(ev, Point):
                extra = ev.extra or {}
                if args.json:
                    line = {"task": int(ev.x), "acc": ev.y, "lo": extra.get("lo")}
                    line["hi"] = extra.get("hi")
                    if "pick" in extra:  # the answer picked and the scores: checks per task
                        line.update(pick=extra["pick"], scores=extra.get("scores"))
                    print(json.dumps(line), flush=True)
                else:
                    print(
                        f"{int(ev.x):5d}  {ev.y:6.2f}%  [{extra.get('lo', 0):.2f}%, "
                        f"{extra.get('hi', 0):.2f}%]",
                        flush=True,
                    )
            elif isinstance(ev, (Finished, Failed, Cancelled)):
                terminal = ev
    except KeyboardInterrupt:
        job.cancel()
        rec.add(Cancelled(partial={"partial": True}))
        terminal = Cancelled()
    finally:
        rec.finish()
    r = rec.result
    if isinstance(terminal, Failed):
        print(f"error: {terminal.message} {terminal.hint}".rstrip(), file=sys.stderr)
        return 1
    keys = ("kind", "tasks_scored", "correct", "acc", "acc_lo", "acc_hi", "partial")
    final = {k: r[k] for k in keys if k in r}
    if args.json:
        print(json.dumps({"final": True, "model": str(args.model), **final}))
    elif "acc" in r:
        name = KIND_NAMES.get(str(r.get("kind")), "Tasks")
        print(
            f"{name}: {r['correct']} of {r['tasks_scored']} right = {r['acc']:.2f}% "
            f"(95% interval {r['acc_lo']:.2f}% to {r['acc_hi']:.2f}%)"
            + (" (partial: stopped before the end)" if r.get("partial") else "")
        )
    return 130 if r.get("partial") else 0
