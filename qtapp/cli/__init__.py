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
COMMANDS = ["hw", "plan", "fetch", "quantize", "eval", "tasks", "versus", "get_tasks", "results"]


def register_all(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for name in COMMANDS:
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
