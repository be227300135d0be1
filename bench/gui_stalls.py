"""How long does the window's event loop stall during the whole demo tour, on busy cores?

    python3 bench/gui_stalls.py [--busy 2] [--same-session] [--trace] [--size WxH] [--screenshots D]
                                [--turns N]

Opens the real main window offscreen (create_app(), so the theme and the GUI-thread garbage
collector are the app's own), starts `--busy` processes that spin on the CPU (2 = every core of
this project's machine busy besides the jobs; each in a session of its own, as other programs
are, or with `--same-session` inside the window's), and walks the demo tour as a user would, a
second between two clicks: the Welcome page's demo button (the meter starts once the window's
first paint is done), hardware, fit, quantize (F16 base, then Q8_0, Q4_K_M, Q2_K), evaluate
the three quants against the base with live curves and speed, compare. A 10 ms QTimer ticks on
the GUI thread from the first page to the Compare page: the longest gap between two ticks is the
longest stall. `--trace` prints the GUI thread's stack whenever it is more than 40 ms late, and
on Linux splits each stall over 50 ms into the GUI thread's own CPU time, its wait for a CPU in
the run queue, and the rest (waiting for the GIL or a lock, for the disk, or idle until the tick).

Prints the tick count, the 99th percentile gap, the longest gap, the gaps over 50 ms and the
tour's wall time; with `--turns N` also the N turns of the GUI thread that took the most CPU,
each with the event that started it and the Python stacks seen during it. To measure another
checkout, run this file with PYTHONPATH pointing at it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# a home of its own, removed at the end (the tour writes about 1.5 GB: the demo model, the F16
# base and three quants); a QUANTLENS_HOME given by the caller is kept
OWN_HOME = "" if os.environ.get("QUANTLENS_HOME") else tempfile.mkdtemp(prefix="quantlens-stalls-")
if OWN_HOME:
    os.environ["QUANTLENS_HOME"] = OWN_HOME
os.environ.setdefault("QUANTLENS_NO_DIALOGS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the app's entry point sets it
ROOT = Path(__file__).resolve().parents[1]
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(ROOT))


def _spin(stop: multiprocessing.synchronize.Event, own_session: bool) -> None:  # type: ignore[name-defined]
    """Another program keeping a core busy: in a session of its own, as a program started from
    elsewhere is (on Linux with autogroup scheduling the CPU is shared between sessions first,
    so spinners inside the window's session would take the window's own share)."""
    if own_session and hasattr(os, "setsid"):
        os.setsid()
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


class StallMeter:
    """Ticks every 10 ms on the GUI thread and keeps the gaps between ticks.

    With ``trace``, a thread samples the GUI thread's stack every 10 ms while it is late; a gap
    over 50 ms is printed with the distinct stacks seen during it (innermost frames last)."""

    def __init__(self, trace: bool) -> None:
        from PySide6.QtCore import QTimer

        self.gaps: list[float] = []
        self.last = time.perf_counter()
        self.samples: list[str] = []
        self.trace = trace
        self._sched = _SchedStat() if trace else None
        #: ms of the GUI thread's CPU, run-queue wait and the rest, summed over stalls > 50 ms
        self.split = [0.0, 0.0, 0.0]
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self.tick)
        self._running = True
        if trace:
            self._watch()

    def start(self) -> None:
        self.last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self._running = False
        self.timer.stop()

    def tick(self) -> None:
        now = time.perf_counter()
        gap = now - self.last
        self.gaps.append(gap)
        self.last = now
        samples, self.samples = self.samples, []
        cpu_wait = self._sched.read() if self._sched else None
        if self.trace and gap > 0.05:
            distinct = list(dict.fromkeys(samples))
            split = ""
            if cpu_wait is not None:
                cpu, wait = cpu_wait
                rest = gap * 1000 - cpu - wait
                for i, part in enumerate((cpu, wait, rest)):
                    self.split[i] += part
                split = f" (GUI thread: cpu {cpu:.0f}, run queue {wait:.0f}, other {rest:.0f} ms)"
            print(
                f"--- stall of {gap * 1000:.0f} ms at {time.strftime('%X')}{split}, "
                f"{len(samples)} samples:",
                flush=True,
            )
            for stack in distinct[:4]:
                print(stack, flush=True)

    def _watch(self) -> None:
        gui = threading.get_ident()

        def run() -> None:
            while self._running:
                time.sleep(0.01)
                if time.perf_counter() - self.last > 0.03:
                    frame = sys._current_frames().get(gui)
                    lines = traceback.format_stack(frame, limit=10) if frame else ["?"]
                    short = [ln.splitlines()[0].replace(str(ROOT), "").strip() for ln in lines]
                    self.samples.append("   " + "\n   ".join(short))

        threading.Thread(target=run, daemon=True, name="stall-watch").start()


class TurnProfiler:
    """``--turns``: the GUI thread's CPU time per turn (per top-level event it handles), with the
    Python stacks a sampler thread saw during the turn, to find what a stall was made of.

    Every event then passes through a Python ``notify`` (nested ones too), which inflates the
    stalls and the turns a little; the turns' order holds. The bench's own ``tour.next()`` calls
    run between events and are not counted."""

    def __init__(self) -> None:
        self.turns: list[tuple[float, float, str, dict[str, int]]] = []  # cpu ms, at, what
        self._depth = 0
        self._since: float | None = None
        self._stacks: dict[str, int] = {}
        self._gui = threading.get_ident()
        self.app: object = None  # the QApplication that reports to it
        threading.Thread(target=self._sample, daemon=True, name="turn-sampler").start()

    @classmethod
    def install(cls) -> TurnProfiler:
        """Make the QApplication (before create_app(), which then takes it as it is)."""
        from PySide6.QtWidgets import QApplication

        from qtapp.ui.app import keep_painting_on_the_gui_thread

        keep_painting_on_the_gui_thread()  # as create_app() does before making the app
        profiler = cls()

        class _App(QApplication):
            def notify(self, receiver: object, event: object) -> bool:  # noqa: N802 - Qt
                return profiler.around(super().notify, receiver, event)

        profiler.app = _App(sys.argv[:1])
        return profiler

    def around(self, deliver: Any, receiver: object, event: Any) -> bool:
        if self._depth:  # an event sent from inside a turn: part of that turn
            self._depth += 1
            try:
                return deliver(receiver, event)
            finally:
                self._depth -= 1
        cpu0, at = time.thread_time(), time.perf_counter()
        self._stacks, self._since, self._depth = {}, at, 1
        try:
            return deliver(receiver, event)
        finally:
            self._depth, self._since = 0, None
            cpu = (time.thread_time() - cpu0) * 1000
            if cpu >= 2:
                kind = getattr(event.type(), "name", str(event.type()))
                what = f"{kind} to {type(receiver).__name__}"
                self.turns.append((cpu, at, what, self._stacks))

    def _sample(self) -> None:
        while True:
            time.sleep(0.002)
            since = self._since
            if since is None or time.perf_counter() - since < 0.002:
                continue
            frame = sys._current_frames().get(self._gui)
            if frame is None:
                continue
            frames = [
                f"{Path(f.filename).name}:{f.lineno} {f.name}"
                for f in traceback.extract_stack(frame)
                if Path(f.filename).name not in ("gui_stalls.py", "runpy.py")
            ]
            key = " < ".join(reversed(frames[-7:]))
            self._stacks[key] = self._stacks.get(key, 0) + 1

    def report(self, count: int, since: float) -> None:
        """The ``count`` turns with the most CPU after ``since`` (the meter's start)."""
        turns = sorted((t for t in self.turns if t[1] >= since), key=lambda t: -t[0])
        print(f"the {min(count, len(turns))} longest of {len(turns)} turns over 2 ms of CPU:")
        for cpu, at, what, stacks in turns[:count]:
            print(f"  {cpu:5.1f} ms CPU at {at - since:6.2f} s: {what}")
            for stack, n in sorted(stacks.items(), key=lambda kv: -kv[1])[:3]:
                print(f"      {n} x {stack[:400]}")


class _SchedStat:
    """The GUI thread's CPU time and run-queue wait since the last read, in ms (Linux's
    /proc/<pid>/task/<tid>/schedstat; nothing elsewhere)."""

    def __init__(self) -> None:
        # opened once and read with pread: a path lookup in /proc at every tick was seen
        # blocking the GUI thread (one stall's only stack sample was inside that open())
        try:
            self.fd: int | None = os.open(
                f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY
            )
        except OSError:
            self.fd = None
        self.last = self._now()

    def _now(self) -> tuple[float, float] | None:
        if self.fd is None:
            return None
        try:
            cpu, wait = os.pread(self.fd, 128, 0).split()[:2]
        except (OSError, ValueError):
            return None
        return int(cpu) / 1e6, int(wait) / 1e6

    def read(self) -> tuple[float, float] | None:
        now, last = self._now(), self.last
        self.last = now
        if now is None or last is None:
            return None
        return now[0] - last[0], now[1] - last[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=2, help="CPU-spinning processes (default 2)")
    parser.add_argument(
        "--same-session",
        action="store_true",
        help="run the spinners in the window's own session (harsher than other programs)",
    )
    parser.add_argument("--trace", action="store_true", help="stacks of stalls over 40 ms")
    parser.add_argument("--size", default="1440x920", help="window size (default 1440x920)")
    parser.add_argument(
        "--screenshots", default="", help="folder: save the Evaluate and Compare pages at the end"
    )
    parser.add_argument(
        "--turns", type=int, default=0, help="print the N turns of the GUI thread with most CPU"
    )
    args = parser.parse_args()

    import numpy as np
    from PySide6.QtCore import QEventLoop, QTimer

    from qtapp.ui.app import create_app
    from qtapp.ui.main_window import MainWindow

    stop = multiprocessing.Event()
    spinners = [
        multiprocessing.Process(target=_spin, args=(stop, not args.same_session))
        for _ in range(args.busy)
    ]
    for proc in spinners:
        proc.start()

    turns = TurnProfiler.install() if args.turns else None
    app = create_app()
    win = MainWindow()
    width, height = (int(v) for v in args.size.split("x"))
    win.resize(width, height)
    t_show = time.perf_counter()
    win.show()
    for _ in range(10):  # the window's first layout and paint: start-up, reported on its own
        app.processEvents()
    first_paint = time.perf_counter() - t_show
    meter = StallMeter(args.trace)
    t0 = time.perf_counter()
    meter.start()

    def wait_for(condition: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        loop = QEventLoop()
        poll = QTimer()
        poll.setInterval(50)
        poll.timeout.connect(  # the deadline too: a failed step never meets its condition
            lambda: loop.quit() if condition() or time.monotonic() > deadline else None  # type: ignore[operator]
        )
        poll.start()
        while not condition():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            loop.exec()
        poll.stop()

    def read_page(seconds: float = 1.0) -> None:
        """A user looks at the page before the next click: two clicks are never one turn."""
        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()

    try:
        welcome = win.pages["welcome"]
        welcome.demo_button.click()
        wait_for(lambda: welcome.tour is not None, 120, "the demo model")
        tour = welcome.tour
        evaluate = win.pages["evaluate"]
        wait_for(lambda: win.pages["fit"].plan is not None, 120, "the fit plan")
        tour.next()  # fit
        read_page()
        tour.next()  # quantize: queues the F16 base, then the three quants
        wait_for(lambda: tour.second_batch_queued, 300, "the F16 base")
        tour.next()  # evaluate: starts when the quants exist
        wait_for(lambda: tour.evaluate_queued, 600, "the quants")
        done = [False]
        evaluate.all_done.connect(lambda: done.__setitem__(0, True))
        wait_for(lambda: done[0], 1200, "the evaluations")
        tour.next()  # compare
        wait_for(lambda: len(win.pages["compare"].runs) >= 3, 60, "the compare page")
        for _ in range(20):
            app.processEvents()
    finally:
        meter.stop()
        wall = time.perf_counter() - t0
        stop.set()
        for proc in spinners:
            proc.join(5)
    g = np.asarray(meter.gaps) * 1000
    where = " (in the window's session)" if args.same_session else ""
    print(
        f"busy processes: {args.busy}{where}; {len(g)} ticks over {wall:.0f} s; "
        f"p99 gap {np.percentile(g, 99):.1f} ms; longest {g.max():.0f} ms; "
        f"{int((g > 50).sum())} gaps over 50 ms; window shown and painted in "
        f"{first_paint * 1000:.0f} ms before the meter started"
    )
    if meter._sched is not None and meter.split[0]:
        cpu, wait, rest = meter.split
        print(
            f"in the stalls over 50 ms the GUI thread ran {cpu:.0f} ms, waited {wait:.0f} ms "
            f"for a CPU and {rest:.0f} ms for anything else"
        )
    if turns is not None:
        turns.report(args.turns, t0)
    if args.screenshots:  # after the meter stopped: the pages as the tour left them
        out = Path(args.screenshots)
        out.mkdir(parents=True, exist_ok=True)
        for page in ("evaluate", "compare"):
            win.show_page(page)
            for _ in range(20):
                app.processEvents()
            win.grab().save(str(out / f"{page}.png"))
        print(f"screenshots in {out}")
    win.close()
    return 0


def _main() -> int:
    try:
        return main()
    finally:
        if OWN_HOME:
            shutil.rmtree(OWN_HOME, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(_main())
