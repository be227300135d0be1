"""``quantlens get-tasks NAME --online``: download a standard task file (never by itself)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qtapp.core.evaluate.task_sets import SOURCES_NOTE, STANDARD_SETS, fetch_task_set


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "get-tasks",
        help="download a standard task file (HellaSwag, Winogrande); needs --online",
        description="Download a standard task file from the source llama.cpp's own scripts use, "
        "into QuantLens' data folder (or --out), and print its path. Nothing is downloaded "
        "without --online or the 'Allow downloads' setting. " + SOURCES_NOTE,
    )
    p.add_argument("name", choices=sorted(STANDARD_SETS), help="the task set")
    p.add_argument("--online", action="store_true", help="allow this download")
    p.add_argument("--out", type=Path, default=None, help="folder (default: the data folder)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qtapp.core.app.paths import app_paths
    from qtapp.core.app.settings import Settings

    online = args.online or Settings.load().network_allowed
    dest = args.out or app_paths().data / "tasks"

    def show(fraction: float, message: str) -> None:
        print(f"\r{args.name}: {fraction:.0%} {message}   ", end="", file=sys.stderr, flush=True)

    path = fetch_task_set(args.name, dest, online, progress=show)
    print(file=sys.stderr)
    print(path)
    return 0
