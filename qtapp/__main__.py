"""``quantlens``: the window by default, subcommands for scripts."""

from __future__ import annotations

import argparse
import os
import sys

from qtapp import __version__

# numpy's OpenBLAS starts a thread per core that spins after each call: in the window (pyqtgraph
# calls numpy on every redraw) and in workers (llama.cpp already uses every core) they only take
# CPU from the GUI thread and the jobs. Set before anything imports numpy; a user's value wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or only the subcommand ``only`` (see ``register_all``)."""
    from qtapp.cli import register_all

    parser = argparse.ArgumentParser(
        prog="quantlens",
        description="Which quantization of a model fits your GPUs, and what it costs in quality "
        "and speed. Without a command, opens the window.",
    )
    parser.add_argument("--version", action="version", version=f"quantlens {__version__}")
    parser.add_argument(
        "--smoke-test", action="store_true", help="open the window and exit 0 once it is shown"
    )
    parser.add_argument("--demo", action="store_true", help="open the window on the demo model")
    parser.add_argument("--open", metavar="MODEL", help="open this GGUF file in the window")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_all(sub, only)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        from qtapp.core.jobs.engine.worker import main as worker_main

        return worker_main()
    from qtapp.cli import command_of
    from qtapp.core.app.logsetup import setup_logging

    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    setup_logging(verbose=False)
    if getattr(args, "func", None) is not None:
        return int(args.func(args) or 0)
    from qtapp.ui.app import run_gui

    return run_gui(smoke_test=args.smoke_test, demo=args.demo, model=args.open)


if __name__ == "__main__":
    sys.exit(main())
