"""The child's lifeline: when the parent is gone, clean up and exit at once.

The parent keeps the write end of the child's stdin open for the whole job and never writes to
it after the spec line. The operating system closes it when the parent exits in any way (a
normal exit, a crash, SIGKILL, Task Manager), so a read here returns end-of-file and the child
removes its partial outputs and exits. One mechanism for Linux, macOS and Windows; it works
while the main thread sits inside a long llama.cpp call, because ctypes releases the GIL.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: exit status of a child whose parent went away (shows in the log if anyone waits for it)
ORPHANED_EXIT = 75

_cleanups: list[Callable[[], object]] = []
_lock = threading.Lock()


def add_cleanup(func: Callable[[], object]) -> Callable[[], object]:
    """Run ``func`` if the parent dies before the job ends (e.g. remove a ``.part`` file)."""
    with _lock:
        _cleanups.append(func)
    return func


def remove_cleanup(func: Callable[[], object]) -> None:
    with _lock:
        if func in _cleanups:
            _cleanups.remove(func)


def _orphaned() -> None:
    with _lock:
        pending = list(reversed(_cleanups))
    for func in pending:
        try:
            func()
        except Exception as exc:  # noqa: BLE001 - the next start's clean-up catches what is left
            print(f"cleanup after the parent's death failed: {exc}", file=sys.stderr)
    os._exit(ORPHANED_EXIT)


def _watch(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            _orphaned()
            return


def watch_parent(fd: int) -> threading.Thread:
    """Start the daemon thread that waits for end-of-file on ``fd`` (the child's stdin)."""
    thread = threading.Thread(target=_watch, args=(fd,), daemon=True, name="lifeline")
    thread.start()
    return thread
