"""``quantlens quantize MODEL --type T [--type T2 ...]``: make quantized copies of a model.

A text progress bar goes to stderr; ``--json`` prints one JSON object per finished output on
stdout. Jobs run one after the other in a worker child; Ctrl+C stops the running one and leaves
no partial file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.jobs.events import Event, Failed, Finished, Progress
from qtapp.core.quantize.jobs import QuantizeOptions, quantize_spec, run_quantize


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "quantize",
        help="quantize a GGUF model to one or more llama.cpp types or recipes",
        description="Quantize MODEL with llama.cpp's quantizer. Outputs are named "
        "<model-stem>-<TYPE>.gguf in --out. Types: every llama.cpp type (Q4_K_M, IQ2_XS, ...), "
        "the dynamic recipes Q2_K_XL..Q6_K_XL and your saved recipes.",
    )
    parser.add_argument("model", type=Path, help="the source .gguf (first shard for split files)")
    parser.add_argument(
        "--type",
        "-t",
        dest="types",
        action="append",
        required=True,
        metavar="TYPE",
        help="target type or recipe; repeat for several outputs",
    )
    parser.add_argument("--imatrix", type=Path, help="importance matrix (.gguf or legacy .dat)")
    parser.add_argument("--out", type=Path, help="output folder (default: from the settings)")
    parser.add_argument(
        "--requantize",
        action="store_true",
        help="allow quantizing an already quantized model (loses quality)",
    )
    parser.add_argument("--output-type", metavar="T", help="type of output.weight, e.g. Q8_0")
    parser.add_argument("--embd-type", metavar="T", help="type of token_embd.weight")
    parser.add_argument(
        "--leave-output", action="store_true", help="keep output.weight unquantized"
    )
    parser.add_argument("--pure", action="store_true", help="no k-quant mixing: one type for all")
    parser.add_argument(
        "--keep-split", action="store_true", help="write as many shards as the source has"
    )
    parser.add_argument(
        "--tensor-type",
        action="append",
        default=[],
        metavar="REGEX=TYPE",
        help="extra tensor-type override (first match wins), like llama-quantize",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--threads", type=int, default=0, help="threads (0 = all cores)")
    parser.add_argument("--json", action="store_true", help="one JSON object per finished output")
    parser.set_defaults(func=run)


class ProgressBar:
    """A one-line bar on stderr, redrawn at most ten times a second."""

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.last = 0.0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, event: Event) -> None:
        if not isinstance(event, Progress):
            return
        now = time.monotonic()
        final = event.fraction >= 1.0
        if now - self.last < (0.1 if self.tty else 2.0) and not final:
            return
        self.last = now
        d = event.detail
        width = 30
        filled = int(round(event.fraction * width))
        bar = "#" * filled + "-" * (width - filled)
        eta = d.get("eta")
        extra = ""
        if "total_bytes" in d and d.get("phase") != "dry_run":
            extra = (
                f" {d.get('done_bytes', 0) / 2**20:7.1f}/{d['total_bytes'] / 2**20:.1f} MiB"
                f" {d.get('mb_per_s', 0.0):6.1f} MB/s"
            )
            extra += f" ETA {eta:5.1f}s" if eta is not None else ""
        text = f"{self.label:<14} [{bar}] {event.fraction * 100:5.1f}%{extra} {event.message}"
        text = text[:160]
        if self.tty:
            self.stream.write("\r" + text.ljust(160)[:160])
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def end(self, message: str) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 160 + "\r")
        self.stream.write(f"{self.label:<14} {message}\n")
        self.stream.flush()


def _parse_rules(items: list[str]) -> list[tuple[str, str]]:
    rules = []
    for item in items:
        pattern, sep, type_name = item.rpartition("=")
        if not sep or not pattern or not type_name:
            raise QuantLensError(
                f"--tensor-type needs REGEX=TYPE, got {item!r}.", "Write it like attn_v=Q8_0."
            )
        rules.append((pattern.lower(), type_name.upper()))
    return rules


def run(args: argparse.Namespace) -> int:
    from qtapp.core.fit.quants import resolve_target
    from qtapp.core.fit.recipes_store import load_user_recipes

    user = load_user_recipes()
    targets = []
    for name in args.types:
        try:
            resolved = resolve_target(name, user)
        except ValueError as exc:
            print(f"quantize: {exc}", file=sys.stderr)
            return 2
        targets.append(resolved.name)
    try:
        options = _options(args, user)
    except QuantLensError as exc:
        print(f"quantize: {exc}", file=sys.stderr)
        return 2
    return _run_targets(args, targets, options)


def _options(args: argparse.Namespace, user: dict[str, Any]) -> QuantizeOptions:
    options = QuantizeOptions(
        out_dir=str(args.out) if args.out else None,
        allow_requantize=args.requantize,
        imatrix=str(args.imatrix) if args.imatrix else None,
        output_tensor_type=args.output_type,
        token_embedding_type=args.embd_type,
        leave_output_tensor=args.leave_output,
        pure=args.pure,
        keep_split=args.keep_split,
        nthread=args.threads,
        overwrite=args.overwrite,
        extra_rules=_parse_rules(args.tensor_type),
        user_recipes=[r.to_dict() for r in user.values()],
    )
    options.validate()
    return options


def _run_targets(args: argparse.Namespace, targets: list[str], options: QuantizeOptions) -> int:
    failures = 0
    for target in targets:
        spec = quantize_spec(args.model, target, options)
        bar = ProgressBar(target)
        t0 = time.monotonic()
        try:
            terminal = run_quantize(spec, on_event=bar.update, record=True)
        except KeyboardInterrupt:
            bar.end("cancelled; no partial file left")
            return 130
        if isinstance(terminal, Finished):
            r = terminal.result
            bar.end(
                f"done in {time.monotonic() - t0:.1f}s: {r['path']} "
                f"({r['bytes'] / 2**20:.1f} MiB, {r.get('bpw') or 0:.2f} bpw)"
            )
            if args.json:
                print(
                    json.dumps(
                        {
                            "type": target,
                            "path": r["path"],
                            "paths": r.get("paths", [r["path"]]),
                            "bytes": r["bytes"],
                            "tensor_bytes": r.get("tensor_bytes"),
                            "seconds": r["seconds"],
                            "bpw": r.get("bpw"),
                            "ftype": r.get("ftype"),
                            "imatrix": r.get("imatrix"),
                            "llama_cpp": r.get("llama_cpp"),
                            "source": str(args.model),
                        }
                    ),
                    flush=True,
                )
        else:
            failures += 1
            message = terminal.message if isinstance(terminal, Failed) else "cancelled"
            hint = terminal.hint if isinstance(terminal, Failed) else ""
            bar.end(f"FAILED: {message} {hint}".rstrip())
    return 1 if failures else 0
