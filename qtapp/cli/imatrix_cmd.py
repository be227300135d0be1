"""``quantlens imatrix MODEL --text FILE --out FILE``: make an importance matrix.

It computes what llama.cpp's ``llama-imatrix`` computes (the same file, GGUF format), in a
worker child; a progress bar with an ETA goes to stderr, ``--json`` prints the result on stdout.
Ctrl+C stops it at once and leaves no partial file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qtapp.core.errors import QuantLensError
from qtapp.core.jobs.events import Event, Failed, Finished, Progress
from qtapp.core.quantize.imatrix_jobs import (
    DEFAULT_CALIBRATION_TEXT,
    ImatrixOptions,
    imatrix_spec,
    run_imatrix,
)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "imatrix",
        help="make an importance matrix (what llama-imatrix computes) for IQ2/IQ3/Q2_K quants",
        description="Run MODEL over a calibration text and write the sums of squared "
        "activations of every weight matrix, as llama.cpp's llama-imatrix does (GGUF imatrix "
        "format). Give the result to 'quantlens quantize --imatrix FILE'.",
    )
    parser.add_argument("model", type=Path, help="the model (.gguf), ideally F16/BF16/Q8_0")
    parser.add_argument(
        "--text",
        type=Path,
        help="calibration text, UTF-8 (default: the bundled "
        f"{Path(DEFAULT_CALIBRATION_TEXT).name})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output file, e.g. model.imatrix.gguf (default: kept in the app's data folder "
        "with the model's fingerprint, where the Quantize page finds it)",
    )
    parser.add_argument("--ctx", type=int, default=512, help="tokens per chunk (default 512)")
    parser.add_argument(
        "--chunks", type=int, default=-1, help="chunks to process (default: the whole text)"
    )
    parser.add_argument("--threads", type=int, default=0, help="threads (0 = all cores)")
    parser.add_argument(
        "--n-gpu-layers", type=int, default=None, help="layers on the GPU (default: all)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def _bar(event: Event, last: list[float]) -> None:
    if not isinstance(event, Progress):
        return
    d = event.detail
    if d.get("phase") != "imatrix" and event.fraction > 0:
        return
    pct = event.fraction * 100
    if pct - last[0] < 5 and event.fraction < 1.0 and last[0] >= 0:
        return
    last[0] = pct
    eta = d.get("eta")
    tail = f" ETA {eta:.0f} s" if isinstance(eta, (int, float)) else ""
    print(f"imatrix [{pct:5.1f}%] {event.message}{tail}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if not args.model.is_file():
        raise QuantLensError(f"The model {args.model} does not exist.", "Give a .gguf file.")
    if args.text is not None and not args.text.is_file():
        raise QuantLensError(
            f"The calibration text {args.text} does not exist.", "Give a UTF-8 text file."
        )
    if args.out is not None:
        if args.out.exists() and not args.overwrite:
            raise QuantLensError(
                f"{args.out} already exists.", "Add --overwrite or choose another --out."
            )
        if not args.out.parent.is_dir():
            raise QuantLensError(
                f"The output folder {args.out.parent} does not exist.", "Create it first."
            )
    if args.ctx < 8:
        raise QuantLensError(f"--ctx {args.ctx} is too small.", "Use 8 or more (512 is usual).")
    options = ImatrixOptions(
        text=str(args.text) if args.text else None,
        ctx=args.ctx,
        chunks=args.chunks if args.chunks > 0 else None,
        threads=args.threads,
        n_gpu_layers=args.n_gpu_layers,
    )
    spec = imatrix_spec(args.model, args.out, options)
    last = [-1.0]
    try:
        terminal = run_imatrix(spec, on_event=lambda ev: _bar(ev, last))
    except KeyboardInterrupt:
        print("imatrix: cancelled, no file written", file=sys.stderr)
        return 130
    if isinstance(terminal, Finished):
        r = terminal.result
        if args.json:
            print(json.dumps(r, indent=2))
        else:
            print(
                f"{r['path']}: {r['entries']} matrices, {r['chunks']} chunks of {r['ctx']} "
                f"tokens, {r['compute_seconds']:.1f} s"
            )
        return 0
    if isinstance(terminal, Failed):
        raise QuantLensError(terminal.message, terminal.hint)
    print("imatrix: cancelled, no file written", file=sys.stderr)
    return 130
