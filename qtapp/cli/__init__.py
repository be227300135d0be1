"""The CLI subcommands. Each module here has ``register(subparsers)`` that sets ``func``."""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any

from qtapp.core.errors import QuantLensError

#: modules under qtapp.cli, one per subcommand, in the order ``--help`` lists them
COMMANDS = [
    "hw", "plan", "fetch", "quantize", "imatrix", "tailor", "eval", "speed", "tasks", "versus",
    "get_tasks", "results",
]  # fmt: skip


def command_of(argv: list[str]) -> str | None:
    """The subcommand a command line names first (None: options only, or the window)."""
    names = {name.replace("_", "-") for name in COMMANDS}
    return argv[0] if argv and argv[0] in names else None


def register_all(sub: argparse._SubParsersAction, only: str | None = None) -> None:  # type: ignore[type-arg]
    """Every subcommand, or ``only`` the one a command line names: a command imports just its
    own module (``quantlens plan`` must not pay numpy and the evaluation modules' imports)."""
    for name in COMMANDS:
        if only is not None and name.replace("_", "-") != only:
            continue
        try:
            module = importlib.import_module(f"qtapp.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name != f"qtapp.cli.{name}_cmd":
                raise
            continue
        module.register(sub)
    for parser in sub.choices.values():  # a safety net: expected failures never show a traceback
        func = parser.get_default("func")
        if func is not None:
            parser.set_defaults(func=_one_line_errors(func))


def _one_line_errors(func: Callable[[argparse.Namespace], Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> Any:
        try:
            return func(args)
        except QuantLensError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run
