"""Threads for the window's off-GUI work, started before they are needed.

``Thread.start()`` blocks its caller until the new thread has been scheduled, holding the GIL:
on busy cores that stalled the GUI thread for up to 50 ms per background call or job. Here idle
threads wait for work; a submit hands a function to one of them and returns at once. When every
thread is busy (a long job each), the pool grows by one: a task never waits behind another, so
a cancel or a job's pump can never be held up by the pool's size.

A thread running a task carries the task's name (``ql-quantize``...), so a leak check sees what
is still running; an idle one is called ``ql-pool-N``.

On Linux a pool thread runs niced (:data:`THREAD_NICENESS`; a nice value there is per thread,
and threads and processes a pool thread starts inherit it). On busy cores the GUI thread shared
its slice of a core equally with every pool thread that had work (parsing a job's lines,
planning, writing results): now it gets the CPU first whenever it has a turn to run, and the
pool threads take what it leaves. On an idle machine nothing changes.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)

POOL_PREFIX = "ql-pool"
#: threads started with the app: background calls (scan, unpack, header read, download) and
#: job pumps (dry runs on every core, a quantize, an evaluation) running at once
WARM_THREADS = 10
#: how much nicer than the GUI thread a pool thread runs (weight 110 against 1024): above the
#: window's jobs (19), whose events it reads, far below the window's own turns
THREAD_NICENESS = 10


def yield_to_the_gui_thread() -> None:
    """Lower the calling thread's CPU priority (Linux, where nice is per thread; elsewhere a
    process's nice value would lower the GUI thread too, so nothing is done)."""
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        # relative to the process's main (GUI) thread, whose thread id is the process id
        niceness = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + THREAD_NICENESS)
        if niceness > os.getpriority(os.PRIO_PROCESS, tid):
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
    except OSError as exc:  # not allowed by a sandbox: the thread runs as it was
        log.debug("could not lower a pool thread's priority: %s", exc)


class ElasticPool:
    """Idle threads take submitted calls; none idle: one more thread is started."""

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any], str]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._idle = 0
        self._numbers = itertools.count(1)

    def submit(self, func: Callable[[], Any], name: str) -> Future[Any]:
        """Run ``func()`` in a pool thread named ``name`` while it runs."""
        future: Future[Any] = Future()
        with self._lock:
            spare = self._idle > 0
            if spare:
                self._idle -= 1
        self._tasks.put((func, future, name))
        if not spare:
            self._start_thread()
        return future

    def warm_up(self, count: int = WARM_THREADS) -> None:
        """Start ``count`` idle threads now and wait until they wait for work."""
        ready = threading.Barrier(count + 1)
        for _ in range(count):
            self._start_thread(ready)
        ready.wait(10)

    def idle(self) -> int:
        with self._lock:
            return self._idle

    def _start_thread(self, ready: threading.Barrier | None = None) -> None:
        if ready is not None:
            with self._lock:
                self._idle += 1  # counted before it runs: a submit may hand it work at once
        name = f"{POOL_PREFIX}-{next(self._numbers)}"
        threading.Thread(target=self._serve, args=(name, ready), daemon=True, name=name).start()

    def _serve(self, idle_name: str, ready: threading.Barrier | None) -> None:
        yield_to_the_gui_thread()
        if ready is not None:
            ready.wait(10)
        me = threading.current_thread()
        while True:
            func, future, name = self._tasks.get()
            me.name = name
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func())
                except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
                    future.set_exception(exc)
            me.name = idle_name
            with self._lock:
                self._idle += 1


_pool: ElasticPool | None = None
_pool_lock = threading.Lock()


def pool() -> ElasticPool:
    """The window's one pool (made on first use; :func:`warm_up` starts its idle threads)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ElasticPool()
        return _pool


def warm_up() -> None:
    """The pool's idle threads and the results store's writer thread."""
    from qtapp.core.evaluate.runs import start_store_thread

    pool().warm_up()
    start_store_thread()
