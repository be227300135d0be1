"""Capture llama.cpp's log inside the worker: pieces joined until the newline, line by line.

Streaming (a handler per line) is for logs read while they grow (a quantize's progress); a
dry run only needs the log once the call returns, so :class:`LogRecord` keeps the raw pieces
and joins them once (llama.cpp logs a tensor line in two pieces: 87k calls per plan of the 397B
seed's 38 types, each decoding and splitting text when streamed).
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable

from qtapp.core.jobs.engine.llama_lib import llama_cpp

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
_CALLBACKS: list[object] = []


class LogRecord:
    """Keep llama.cpp's log pieces while the context is active; :meth:`lines` after it."""

    def __init__(self) -> None:
        self._pieces: list[tuple[int, bytes]] = []
        append = self._pieces.append

        def on_text(level: int, text: bytes | None, _user: ctypes.c_void_p) -> None:
            append((level, text or b""))

        self._callback = llama_cpp.llama_log_callback(on_text)

    def runs(self) -> list[tuple[int, str]]:
        """The log as (level, text) runs of consecutive pieces at one level, in order (a piece
        of level 5, GGML_LOG_LEVEL_CONT, continues the run before it)."""
        out: list[tuple[int, str]] = []
        level = -1
        parts: list[bytes] = []
        for piece_level, text in self._pieces:
            if piece_level != 5 and piece_level != level:
                if parts:
                    out.append((level, b"".join(parts).decode("utf-8", "replace")))
                level, parts = piece_level, []
            parts.append(text)
        if parts:
            out.append((max(level, 0), b"".join(parts).decode("utf-8", "replace")))
        return out

    def __enter__(self) -> LogRecord:
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))
        return self

    def __exit__(self, *exc: object) -> None:
        _CALLBACKS.append(self._callback)  # llama.cpp keeps it: it must outlive the call
