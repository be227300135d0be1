"""Capture llama.cpp's log inside the worker: pieces joined until the newline, line by line."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable

import llama_cpp

LineHandler = Callable[[int, str], None]


class LlamaLog:
    """Route llama.cpp's log lines to ``handler(level, line)`` while the context is active.

    The ctypes callback is kept referenced on the instance for as long as llama.cpp may call it
    (a dropped one segfaults). Lines also go to stderr when ``echo`` is set, for the job's log.
    """

    def __init__(self, handler: LineHandler, echo: bool = False) -> None:
        self._handler = handler
        self._echo = echo
        self._buffer = ""
        self._level = 0
        self._callback = llama_cpp.llama_log_callback(self._on_text)

    def _on_text(self, level: int, text: bytes | None, _user: ctypes.c_void_p) -> None:
        if level != 5:  # GGML_LOG_LEVEL_CONT continues the previous line's level
            self._level = level
        self._buffer += (text or b"").decode("utf-8", "replace")
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if self._echo:
                import sys

                print(line, file=sys.stderr)
            # never let a handler bug unwind through C
            with contextlib.suppress(Exception):
                self._handler(self._level, line)

    def flush(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self._handler(self._level, line)

    def __enter__(self) -> LlamaLog:
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()
        # keep the callback installed (llama.cpp may log from other threads later); the
        # instance must outlive it, so park it on the module
        _KEEP.append(self)


_KEEP: list[LlamaLog] = []
