"""The window's thread pool: warm threads take work, a busy pool grows instead of queueing."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from qtapp.ui.common.threads import POOL_PREFIX, THREAD_NICENESS, ElasticPool

pytestmark = pytest.mark.timeout(60)


def test_warm_threads_wait_idle_and_take_work_named_after_it() -> None:
    pool = ElasticPool()
    pool.warm_up(3)
    assert pool.idle() == 3
    name = pool.submit(lambda: threading.current_thread().name, "ql-demo-job").result(10)
    assert name == "ql-demo-job"
    assert sum(t.name.startswith(POOL_PREFIX) for t in threading.enumerate()) >= 3


def test_a_busy_pool_grows_so_no_call_waits_behind_a_long_one() -> None:
    pool = ElasticPool()
    pool.warm_up(1)
    release = threading.Event()
    long_call = pool.submit(lambda: release.wait(30), "ql-long")
    # the only warm thread is busy: this call must still run at once, on a new thread
    assert pool.submit(lambda: 42, "ql-short").result(10) == 42
    assert not long_call.done()
    release.set()
    assert long_call.result(10) is True


def test_an_error_reaches_the_future_and_the_thread_serves_on() -> None:
    pool = ElasticPool()
    pool.warm_up(1)

    def boom() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        pool.submit(boom, "ql-boom").result(10)
    assert pool.submit(lambda: "still serving", "ql-next").result(10) == "still serving"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_pool_threads_yield_the_cpu_to_the_gui_thread() -> None:
    """A pool thread runs THREAD_NICENESS nicer than the process's main thread; the main
    thread itself (the GUI thread) keeps its priority."""
    pool = ElasticPool()
    pool.warm_up(1)
    main = os.getpriority(os.PRIO_PROCESS, os.getpid())

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    assert pool.submit(niceness, "ql-nice").result(10) == min(19, main + THREAD_NICENESS)
    assert niceness() == main
