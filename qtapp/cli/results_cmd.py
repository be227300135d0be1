"""``quantlens results``: list, export, delete, rename and annotate stored runs."""

from __future__ import annotations

import argparse
import sys

from qtapp.core.errors import QuantLensError
from qtapp.core.results.comparison import QUALITY_METRICS, Budget, build_rows, parse_budget
from qtapp.core.results.recovery import recover_at_start
from qtapp.core.results.report import COLUMNS, cell, export, write_export
from qtapp.core.results.store import KINDS, ResultsStore

_TABLE_COLUMNS = (
    "run_id",
    "model",
    "label",
    "kind",
    "state",
    "size_gib",
    "bpw",
    "ppl",
    "bpb",
    "acc",
    "dppl_pct",
    "kld_mean",
    "same_top_pct",
    "tg_tps",
    "fits",
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "results",
        help="list and export stored plans, quantizations and evaluations",
        description="Stored results (the same as the window's Compare page). Prints a table by "
        "default; --format csv|json|md|html for exports.",
    )
    p.add_argument(
        "--model", metavar="M", help="only runs of this model (name, path or fingerprint)"
    )
    p.add_argument("--kind", choices=KINDS, help="only this kind of run")
    p.add_argument("--format", choices=("table", "csv", "json", "md", "html"), default="table")
    p.add_argument("--out", metavar="FILE", help="write the export to FILE instead of stdout")
    p.add_argument(
        "--budget", metavar="2x48GiB", help="GPU memory to check each run against (the Fits column)"
    )
    p.add_argument(
        "--metric",
        choices=tuple(QUALITY_METRICS),
        default="kld",
        help="quality measure for the HTML charts and recommendations",
    )
    p.add_argument("--delete", type=int, metavar="ID", action="append", help="delete a run")
    p.add_argument("--rename", nargs=2, metavar=("ID", "LABEL"), help="relabel a run")
    p.add_argument("--note", nargs=2, metavar=("ID", "TEXT"), help="annotate a run")
    p.add_argument("--path", action="store_true", help="print the database file and exit")
    p.set_defaults(func=run)


def _recover(store: ResultsStore) -> None:
    """What the window does at start: runs of a QuantLens that was killed become interrupted,
    and their partial files go; said on stderr so that exports stay clean."""
    recovery = recover_at_start(store)
    if recovery.message():
        print(f"quantlens results: {recovery.message()}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        budget: Budget | None = parse_budget(args.budget) if args.budget else None
    except ValueError as exc:
        print(f"quantlens results: {exc}", file=sys.stderr)
        return 2
    try:
        store = ResultsStore.open()
    except QuantLensError as exc:
        print(f"quantlens results: {exc}", file=sys.stderr)
        return 1
    with store:
        if args.path:
            print(store.path)
            return 0
        if args.delete or args.rename or args.note:
            return _edit(store, args)
        _recover(store)
        # rows from every run, so ΔPPL finds the base and predictions find their plan run
        every = store.list_runs()
        runs = store.list_runs(model=args.model, kind=args.kind)
        keep = {r.id for r in runs}
        rows = [r for r in build_rows(every, [budget] if budget else []) if r.run_id in keep]
        text = (
            _table(rows)
            if args.format == "table"
            else export(rows, args.format, runs, args.metric, budget)
        )
    if args.out:
        try:
            print(f"wrote {write_export(args.out, text)}")
        except QuantLensError as exc:
            print(f"quantlens results: {exc}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


def _edit(store: ResultsStore, args: argparse.Namespace) -> int:
    known = {r.id for r in store.list_runs()}
    try:
        ids = list(args.delete or []) + [int(x[0]) for x in (args.rename, args.note) if x]
    except ValueError:
        print(
            "quantlens results: a run ID is a number; `quantlens results` lists them",
            file=sys.stderr,
        )
        return 2
    missing = [i for i in ids if i not in known]
    if missing:
        print(
            f"quantlens results: no run with id {missing[0]}; `quantlens results` lists them",
            file=sys.stderr,
        )
        return 1
    for run_id in args.delete or []:
        store.delete_run(run_id)
        print(f"deleted run {run_id}")
    if args.rename:
        store.rename_run(int(args.rename[0]), args.rename[1])
        print(f"renamed run {args.rename[0]} to {args.rename[1]!r}")
    if args.note:
        store.annotate_run(int(args.note[0]), args.note[1])
        print(f"annotated run {args.note[0]}")
    return 0


def _table(rows: list) -> str:  # type: ignore[type-arg]
    if not rows:
        return "No stored results yet. Plans, quantizations and evaluations are kept here.\n"
    cols = [c for c in COLUMNS if c[0] in _TABLE_COLUMNS]
    grid = [[h for _k, h, _f in cols]] + [[cell(r, k, f) for k, _h, f in cols] for r in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(cols))]
    numeric = [f != "{}" for _k, _h, f in cols]
    out = []
    for n, line in enumerate(grid):
        out.append(
            "  ".join(
                v.rjust(w) if numeric[i] and n else v.ljust(w)
                for i, (v, w) in enumerate(zip(line, widths, strict=False))
            ).rstrip()
        )
    if any(r.speed_source == "predicted" for r in rows):
        out.append("* predicted speed (no measurement yet)")
    return "\n".join(out) + "\n"
