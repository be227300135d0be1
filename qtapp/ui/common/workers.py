"""The one adapter between core.jobs and Qt signals.

A :class:`JobRunner` runs one :class:`~qtapp.core.jobs.job.Job` in a thread of the window's pool
and re-emits its events as queued signals on the GUI thread. Widgets never block and never poll
a process. A job's :class:`~qtapp.core.jobs.job.JobHooks` (store writes, clean-up) run in that
thread too, so the GUI thread never waits for the disk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any

from PySide6.QtCore import QObject, Signal

from qtapp.core.jobs.events import Cancelled, Event, Failed, Finished
from qtapp.core.jobs.job import Job, JobHooks, JobSpec
from qtapp.ui.common.threads import pool

log = logging.getLogger(__name__)


class JobRunner(QObject):
    """Runs one job off the GUI thread. ``event`` fires for every event, ``done`` for the last."""

    event = Signal(object)
    done = Signal(object)

    def __init__(
        self,
        spec: JobSpec,
        parent: QObject | None = None,
        hooks: JobHooks | None = None,
    ) -> None:
        super().__init__(parent)
        self.spec = spec
        self.job = Job(spec, yield_to_window=True)
        self.hooks = hooks
        self._pumping: Future[None] | None = None
        self._canceller: Future[None] | None = None
        self.terminal: Event | None = None

    def start(self) -> None:
        """Start the child from the pump thread: spawning a process can take tens of ms."""
        self._pumping = pool().submit(self._pump, f"ql-{self.spec.kind}")

    def _pump(self) -> None:
        if self.hooks is not None:
            self._call(self.hooks.begin)
        for ev in self.job.events():
            if isinstance(ev, (Finished, Failed, Cancelled)):
                if self.hooks is not None:
                    self._call(self.hooks.end, ev)
                self.terminal = ev
                self.done.emit(ev)
            else:
                self.event.emit(ev)

    def _call(self, func: Callable[..., object], *args: object) -> None:
        try:
            func(*args)
        except Exception:  # noqa: BLE001 - a hook's failure must not lose the job's outcome
            log.exception("job hook %s failed", getattr(func, "__name__", func))

    def cancel(self) -> None:
        """Kill the child without blocking the GUI thread (SIGKILL may follow after a grace)."""
        self._canceller = pool().submit(self.job.cancel, "ql-cancel")

    def is_running(self) -> bool:
        return self._pumping is not None and not self._pumping.done()

    def wait(self, timeout: float = 10) -> None:
        """Block until the pump thread ends (used on close, after cancel)."""
        waiting = [f for f in (self._canceller, self._pumping) if f is not None]
        wait_futures(waiting, timeout)


class JobManager(QObject):
    """Runs jobs one at a time, in order (a queue, like Vorta's JobsManager)."""

    queue_changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pending: list[tuple[JobRunner, Callable[[JobRunner], Any] | None]] = []
        self.current: JobRunner | None = None

    def submit(
        self,
        spec: JobSpec,
        on_start: Callable[[JobRunner], Any] | None = None,
        hooks: JobHooks | None = None,
    ) -> JobRunner:
        runner = JobRunner(spec, self, hooks)
        self._pending.append((runner, on_start))
        self._next()
        self.queue_changed.emit()
        return runner

    def pending(self) -> list[JobRunner]:
        return [r for r, _ in self._pending]

    def remove(self, runner: JobRunner) -> None:
        """Drop a job that has not started yet."""
        self._pending = [(r, f) for r, f in self._pending if r is not runner]
        self.queue_changed.emit()

    def _next(self) -> None:
        if self.current is not None and self.current.terminal is None:
            return
        if not self._pending:
            self.current = None
            return
        runner, on_start = self._pending.pop(0)
        self.current = runner
        runner.done.connect(lambda _ev: self._next())
        runner.done.connect(lambda _ev: self.queue_changed.emit())
        if on_start is not None:
            on_start(runner)
        runner.start()

    def shutdown(self) -> None:
        """Cancel everything and wait for the threads: nothing is left behind on close."""
        self._pending.clear()
        if self.current is not None:
            self.current.cancel()
            self.current.wait()
