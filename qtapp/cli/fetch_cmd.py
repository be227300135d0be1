"""``quantlens fetch hf://owner/name/FILE --online``: download one model of a Hugging Face repo
into the Hugging Face cache, verified; and ``quantlens plan hf://owner/name --online``: plan
every GGUF file of a repo from its headers (the plan command hands remote models to
:func:`run_remote_plan`)."""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtapp.core.errors import QuantLensError

#: what --online allows (the window's equivalent is NETWORK_OFF_HINT: 'Allow downloads')
CLI_OFF_HINT = (
    "QuantLens then reads only the files' headers (plan), or downloads the one file named (fetch)."
)

if TYPE_CHECKING:
    from qtapp.core.fit.plan import PlanInputs
    from qtapp.core.remote.fit import RepoPlan


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "fetch",
        help="download a GGUF model from a Hugging Face repo, verified; needs --online",
        description="Download one model of a Hugging Face repo (every part of a split set) into "
        "the Hugging Face cache (HF_HUB_CACHE or HF_HOME), where the Models page, llama.cpp "
        "and other tools find it. Resumes an interrupted download; the file takes its name "
        "only once its sha256 matches the repo's. HF_TOKEN is used for gated repos, "
        "HF_ENDPOINT for a mirror. Prints the downloaded file's path.",
    )
    p.add_argument(
        "source", help="hf://owner/name/FILE.gguf or a https://…/resolve/…/FILE.gguf link"
    )
    p.add_argument("--online", action="store_true", help="allow this download")
    p.add_argument("--cache-dir", type=Path, default=None, help="another Hugging Face cache folder")
    p.set_defaults(func=run)


def _require_online(args: argparse.Namespace, what: str) -> None:
    """The CLI touches the network only when the command line says so (``--online``)."""
    if not args.online:
        raise QuantLensError(
            f"{what} needs the network, which QuantLens uses only when asked.",
            f"Add --online to the command: {CLI_OFF_HINT}",
        )


def run(args: argparse.Namespace) -> int:
    from qtapp.core.remote.download import DownloadProgress, fetch_model, snapshot_path
    from qtapp.core.remote.headers import fetch_model_headers
    from qtapp.core.remote.listing import list_repo
    from qtapp.core.remote.source import parse_source

    ref = parse_source(args.source)
    _require_online(args, f"Downloading {ref}")
    if ref.path is None:
        raise QuantLensError(
            f"{args.source} names a repo, not a file.",
            f"See its files with: quantlens plan hf://{ref.repo_id} --online",
        )
    listing = list_repo(ref)
    model = listing.find(ref.path)
    if not snapshot_path(listing, model, args.cache_dir).exists():
        # the same checks as a local file's header before a byte of the data: a file that is
        # no model (or a damaged one) is refused in one line, and nothing lands in the cache
        fetch_model_headers(listing, model)

    def show(p: DownloadProgress) -> None:
        print(
            f"\r{model.name}: {p.fraction:.0%} {p.text()}   ", end="", file=sys.stderr, flush=True
        )

    try:
        path = fetch_model(listing, model, True, args.cache_dir, progress=show)
    finally:
        print(file=sys.stderr)
    print(path)
    return 0


# -- quantlens plan hf://… ------------------------------------------------------------------------
def run_remote_plan(
    args: argparse.Namespace,
    build_inputs: Callable[[argparse.Namespace], tuple[PlanInputs, list[str], Any]],
) -> int:
    """Plan every GGUF model of a repo (or the one file named) with ``build_inputs``, the
    function ``quantlens plan FILE`` builds a local file's plan inputs with."""
    from qtapp.core.remote.fit import add_exact_memory, plan_repo
    from qtapp.core.remote.listing import list_repo
    from qtapp.core.remote.source import parse_source

    shown: list[str] = []  # the header lines printed (on one line, rewritten in place)
    try:
        ref = parse_source(args.model)
        _require_online(args, f"Planning {ref}")
        listing = list_repo(ref)
        if ref.path is not None:
            listing = replace(listing, models=[listing.find(ref.path)])
        warnings: list[str] = []

        def inputs_for(path: Path) -> PlanInputs:
            local = copy.copy(args)
            local.model = str(path)
            inp, _targets, _checks = build_inputs(local)
            if not args.fast:  # llama.cpp's own KV / compute sizes (cached per file)
                why = add_exact_memory(inp)
                if why is not None:
                    warnings.append(f"{path.name}: exact KV / compute unavailable ({why})")
            return inp

        def show(i: int, n: int, name: str) -> None:
            if not args.json:
                shown.append(name)
                print(f"\rreading header {i + 1} of {n}: {name}   ", end="", file=sys.stderr)

        plan = plan_repo(listing, inputs_for, progress=show)
        if ref.path is not None and plan.files[0].error:  # the one file asked for: one line
            raise QuantLensError(plan.files[0].error)
    except QuantLensError as exc:
        print(("\n" if shown else "") + f"error: {exc}", file=sys.stderr)
        return 2
    if shown:
        print(file=sys.stderr)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=1))
    else:
        print(format_remote(plan))
    return 0


def _gib(b: float) -> str:
    return f"{b / 2**30:7.2f}"


def format_remote(plan: RepoPlan) -> str:
    lines = [f"{plan.listing.repo_id} at {plan.listing.commit[:12]}", ""]
    names = [f.model.name for f in plan.files]
    w = max([4, *(len(n) for n in names)])
    head = f"{'file':<{w}} {'type':<8} {'GiB':>7} {'parts':>5} {'verdict':<8} {'GPU':>7} "
    head += f"{'host':>7} {'tg t/s':>7}  note"
    lines += [head + "   (GiB)", "-" * len(head)]
    for f in plan.files:
        row = f.current
        mark = "*" if f.model.name == plan.recommended else " "
        if row is None:
            lines.append(
                f"{f.model.name:<{w}} {'':<8} {_gib(f.model.size)} {f.model.shards:>5} "
                f"{'error':<8}  {f.error}"
            )
            continue
        lines.append(
            f"{f.model.name:<{w}} {f.file_type:<8} {_gib(f.model.size)} {f.model.shards:>5} "
            f"{f.verdict + mark:<8} {_gib(row.gpu_bytes)} {_gib(row.host_bytes)} "
            f"{row.tg_tps:7.1f}  {row.note}"
        )
    lines += [
        "",
        f"Recommended: {plan.recommended or 'none'}",
        plan.why,
        f"Headers read: {plan.stats.bytes:,} bytes in {plan.stats.requests} range requests.",
    ]
    if plan.recommended:
        first = plan.listing.find(plan.recommended).first.path
        lines.append(f"Download: quantlens fetch hf://{plan.listing.repo_id}/{first} --online")
    return "\n".join(lines)
