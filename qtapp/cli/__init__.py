"""The CLI subcommands. Each module here has ``register(subparsers)`` that sets ``func``."""

from __future__ import annotations

import argparse
import importlib

#: modules under qtapp.cli, one per subcommand, in the order ``--help`` lists them
COMMANDS = ["hw", "plan", "quantize", "eval", "results"]


def register_all(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"qtapp.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name != f"qtapp.cli.{name}_cmd":
                raise
            continue
        module.register(sub)
