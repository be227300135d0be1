"""The parent side of a llama.cpp job: start the child, turn its lines into events, cancel.

The child (``qtapp.core.jobs.engine.worker``) runs in its own process group, so a crash, an abort or
an out-of-memory kill in llama.cpp ends only the child; here it becomes a :class:`Failed` event.
Cancel means the process is gone: SIGTERM to the group, then SIGKILL after a short grace.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtapp.core.jobs.events import TERMINAL, Cancelled, Event, Failed, decode

log = logging.getLogger(__name__)

_EOF = object()


@dataclass(frozen=True)
class JobSpec:
    """What the child should do: ``kind`` names a handler in the worker, ``params`` its input."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "params": self.params})


class JobHooks:
    """What to do around one job, in the thread that runs it: :meth:`begin` before the child
    starts, :meth:`end` with its terminal event. The base class does nothing."""

    def begin(self) -> None:
        """Before the child starts (e.g. record the run as running)."""

    def end(self, terminal: Event) -> None:
        """After the terminal event, before anyone is told (e.g. clean up, store the result)."""


def worker_command() -> list[str]:
    """The command line that starts a worker child: from a checkout, an install or a build."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--worker"]
    return [sys.executable, "-m", "qtapp", "--worker"]


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if name == "SIGKILL":
            return (
                "the llama.cpp process was killed (SIGKILL), often by the system running out of "
                "memory"
            )
        if name == "SIGABRT":
            return "llama.cpp aborted (SIGABRT)"
        if name == "SIGSEGV":
            return "llama.cpp crashed (SIGSEGV)"
        return f"the llama.cpp process ended on {name}"
    return f"the llama.cpp process exited with code {code}"


#: what to try when a job's child died, by job kind; each names the setting that helps
CRASH_HINTS: dict[str, str] = {
    "quantize": "The window is fine and no partial file was kept. Quantizing holds a few tensors "
    "in memory at a time: close other programs and try again, or use fewer threads "
    "(--threads in the CLI, Threads on the Quantize page). The log has llama.cpp's last lines.",
    "evaluate": "The window is fine; the points measured so far are kept. If memory ran out, "
    "use a smaller context (--ctx in the CLI, Context on the Evaluate page) or fewer GPU layers "
    "(--n-gpu-layers in the CLI). The log has llama.cpp's last lines.",
}
CRASH_HINTS["speed"] = CRASH_HINTS["evaluate"]
DEFAULT_CRASH_HINT = (
    "The window is fine. The log has llama.cpp's last lines; if memory ran out, close other "
    "programs or choose a smaller model."
)


#: a job the window started runs this much nicer than the window (POSIX): where processes share
#: the CPU by their nice values (no autogroup, or a desktop's cgroup per app) it yields to the
#: window; under autogroup its session of its own (Job.start) keeps it off the window's share.
WINDOW_JOB_NICENESS = 19

_window_process = False


def start_jobs_for_a_window(on: bool = True) -> None:
    """Every job this process starts from now on yields the CPU to it (``Job.yield_to_window``),
    whichever thread or module starts it: the window's dry runs and quantizations come from
    core code that the CLI shares."""
    global _window_process
    _window_process = on


def crash_hint(kind: str) -> str:
    return CRASH_HINTS.get(kind, DEFAULT_CRASH_HINT)


def _lower_priority(pid: int) -> None:
    """Nice the child from here, as soon as it exists: its own Python start-up (50 ms of CPU)
    then already yields to the window. Its threads (llama.cpp's) inherit the value."""
    try:
        niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + WINDOW_JOB_NICENESS)
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except OSError as exc:  # the child already gone (the reader reports why), or not allowed
        log.debug("could not lower job %s's priority: %s", pid, exc)


class Job:
    """One child process running one :class:`JobSpec`.

    Iterate :meth:`events` from any thread; it ends after exactly one terminal event
    (:class:`Finished`, :class:`Failed` or :class:`Cancelled`).
    """

    def __init__(
        self,
        spec: JobSpec,
        env: dict[str, str] | None = None,
        yield_to_window: bool | None = None,
    ) -> None:
        self.spec = spec
        self._env = env
        #: the window's jobs run at a lower priority: llama.cpp keeps every core busy, and the
        #: GUI thread must still get the CPU within a frame. On an idle machine nothing changes.
        #: None: as set for this process (start_jobs_for_a_window).
        self.yield_to_window = _window_process if yield_to_window is None else yield_to_window
        self._proc: subprocess.Popen[bytes] | None = None
        self._queue: queue.Queue[object] = queue.Queue()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._cancelled = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started_at: float | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        env = dict(os.environ if self._env is None else self._env)
        root = str(Path(__file__).resolve().parents[3])  # the folder that holds qtapp/
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        env["PYTHONUNBUFFERED"] = "1"
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            flags = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
            if self.yield_to_window:
                flags |= subprocess.BELOW_NORMAL_PRIORITY_CLASS  # type: ignore[attr-defined]
            kwargs["creationflags"] = flags
        else:
            # A session of its own, which is also a process group of its own (cancel signals
            # the group). With Linux's autogroup scheduling the CPU is shared between sessions
            # first: a job in the window's session spent the window's share, and the GUI thread
            # then waited behind other programs for a CPU (BENCHMARKS.md, 2026-12-07 09:00).
            kwargs["start_new_session"] = True
        self._proc = subprocess.Popen(
            worker_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            **kwargs,
        )
        if self.yield_to_window and hasattr(os, "setpriority"):
            _lower_priority(self._proc.pid)
        self.started_at = time.monotonic()
        assert self._proc.stdin is not None
        try:
            # stdin stays open: it is the child's lifeline (engine/lifeline.py). When this
            # process dies in any way, the OS closes it and the child cleans up and exits.
            self._proc.stdin.write((self.spec.to_json() + "\n").encode())
            self._proc.stdin.flush()
        except OSError:
            pass  # the child died at once; the reader reports why
        if self._cancelled.is_set():  # cancelled while the process was being spawned
            self.cancel()
        for target in (self._read_stdout, self._read_stderr):
            thread = threading.Thread(target=target, daemon=True, name=f"job-{self.spec.kind}")
            thread.start()
            self._threads.append(thread)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cancel(self, grace: float = 0.5) -> None:
        """Stop the child now: SIGTERM to its process group, SIGKILL if still there after grace."""
        self._cancelled.set()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if os.name == "nt":
                proc.terminate()
            else:
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except (ProcessLookupError, PermissionError):
            pass
        except subprocess.TimeoutExpired:
            try:
                if os.name == "nt":
                    proc.kill()
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)

    # -- reading ---------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if line:
                self._queue.put(decode(line))
        self._queue.put(_EOF)

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr_tail.append(line)
                log.debug("[child %s] %s", self.spec.kind, line)

    def stderr_tail(self) -> list[str]:
        return list(self._stderr_tail)

    def events(self) -> Iterator[Event]:
        """Yield the child's events; always ends with one terminal event.

        Starts the child if :meth:`start` was not called (so a caller can start it off the GUI
        thread); a job cancelled before it started ends at once with :class:`Cancelled`.
        """
        if self._proc is None:
            if self._cancelled.is_set():
                yield Cancelled()
                return
            self.start()
        while True:
            item = self._queue.get()
            if item is _EOF:
                break
            assert isinstance(item, Event)
            if isinstance(item, TERMINAL):
                if self._cancelled.is_set() and not isinstance(item, Cancelled):
                    continue
                self.wait()
                yield item
                return
            yield item
        code = self.wait()
        if self._cancelled.is_set():
            yield Cancelled()
            return
        tail = "\n".join(self._stderr_tail)
        last = next((ln for ln in reversed(self._stderr_tail) if ln.strip()), "")
        yield Failed(
            message=f"{_describe_exit(code)}. {last}".strip(),
            hint=crash_hint(self.spec.kind),
            partial={"stderr_tail": tail},
        )

    def wait(self, timeout: float | None = 30) -> int:
        assert self._proc is not None
        code = self._proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=2)
        self._close_lifeline()
        return code

    def _close_lifeline(self) -> None:
        stdin = self._proc.stdin if self._proc is not None else None
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):  # the child is gone, its end of the pipe with it
                stdin.close()

    def run(self) -> tuple[Event, list[Event]]:
        """Run to the end in this thread; return the terminal event and all events before it."""
        seen = list(self.events())
        return seen[-1], seen[:-1]


def run_to_end(
    spec: JobSpec,
    on_event: Callable[[Event], Any] | None = None,
    on_start: Callable[[Job], Any] | None = None,
    end: Callable[[Event], Any] | None = None,
) -> Event:
    """Run one job to its terminal event in this thread (the CLI, tests) and return it.

    Events before it go to ``on_event``; ``on_start`` gets the :class:`Job` (to cancel it from
    elsewhere); Ctrl+C cancels the child; ``end(terminal)`` always runs (clean-up, records)."""
    job = Job(spec)
    job.start()
    if on_start is not None:
        on_start(job)
    terminal: Event = Failed(message="The job ended without a result.")
    try:
        for event in job.events():
            if isinstance(event, TERMINAL):
                terminal = event
            elif on_event is not None:
                on_event(event)
    except KeyboardInterrupt:
        job.cancel()
        terminal = Cancelled()
        raise
    finally:
        if job.is_running():
            job.cancel()
        if end is not None:
            end(terminal)
    return terminal


def run_job(kind: str, **params: Any) -> dict[str, Any]:
    """Run a job to completion and return its result, raising on failure (for the CLI and tests)."""
    from qtapp.core.errors import QuantLensError
    from qtapp.core.jobs.events import Finished

    last, _ = Job(JobSpec(kind, params)).run()
    if isinstance(last, Finished):
        return last.result
    if isinstance(last, Failed):
        raise QuantLensError(last.message, last.hint)
    raise QuantLensError("The job was cancelled.")
