"""Logging to a file in the log folder (and to stderr for warnings)."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from typing import TextIO

from qtapp.core.app.paths import app_paths
from qtapp.core.errors import QuantLensError

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (test runners and GUIs replace it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    root = logging.getLogger()
    if any(getattr(h, "_quantlens", False) for h in root.handlers):
        return
    root.setLevel(logging.DEBUG)
    try:
        file_handler: logging.Handler | None = logging.handlers.RotatingFileHandler(
            app_paths().log_file, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
    except (OSError, QuantLensError):  # the command that needs the folders says why, once
        file_handler = None
    console = _StderrHandler()
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    console._quantlens = True  # type: ignore[attr-defined]
    if file_handler is not None:
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        file_handler.setLevel(logging.DEBUG)
        file_handler._quantlens = True  # type: ignore[attr-defined]
        root.addHandler(file_handler)
    root.addHandler(console)
