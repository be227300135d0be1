"""How long does the GUI event loop stall while the Evaluate page's curves update?

    python3 bench/eval_responsiveness.py BASE.gguf QUANT.gguf [QUANT.gguf ...] [--chunks 8]

Opens the real main window offscreen at 1440x920 (create_app() for the theme) on the Evaluate
page and evaluates each quant against BASE (KLD) on ``--chunks`` chunks plus speed (2 reps, 2
threads). A 10 ms ``QTimer`` on the GUI thread ticks throughout: the longest gap between two
ticks is the longest stall. Prints ticks, the 99th percentile gap, the longest gap and how many
gaps exceeded 50 ms. To measure another checkout (e.g. the code before a change), run this file
with ``PYTHONPATH`` pointing at that checkout.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QUANTLENS_HOME", tempfile.mkdtemp(prefix="quantlens-bench-"))
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("quants", type=Path, nargs="+")
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--depths", default="0", help="speed at these context depths, e.g. 0,512,1024 (issue #19)"
    )
    parser.add_argument(
        "--trace", action="store_true", help="print the GUI thread's stack during stalls > 40 ms"
    )
    args = parser.parse_args()

    import numpy as np
    from PySide6.QtCore import QEventLoop, QTimer

    from qtapp.ui.app import create_app
    from qtapp.ui.main_window import MainWindow

    app = create_app()
    win = MainWindow()
    win.resize(1440, 920)
    win.show()
    win.show_page("evaluate")
    page = win.pages["evaluate"]
    page.controls.reps.setValue(2)
    page.controls.threads.setValue(args.threads)
    page.controls.depths.setText(args.depths)
    for _ in range(20):
        app.processEvents()

    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    meter = QTimer()
    meter.setInterval(10)
    meter.timeout.connect(tick)
    if args.trace:
        _watch(last)
        for name in ("_finish", "_submit"):
            _announce(page, name)
        _announce(page.memory, "start_run")
        _announce(page.memory, "_on_reading")
    loop = QEventLoop()
    page.all_done.connect(loop.quit)
    t0 = time.perf_counter()
    page.queue(list(args.quants), args.base, chunks=args.chunks, speed=True, repetitions=2)
    last[0] = time.perf_counter()
    meter.start()
    loop.exec()
    meter.stop()
    wall = time.perf_counter() - t0
    page.wait_stored()
    g = np.asarray(gaps) * 1000
    print(
        f"{len(g)} ticks over {wall:.0f} s; p99 gap {np.percentile(g, 99):.1f} ms; "
        f"longest {g.max():.0f} ms; {int((g > 50).sum())} gaps over 50 ms"
    )
    states = [page.table.item(r, 1).text() for r in range(page.table.rowCount())]
    print("runs:", states)
    win.close()
    return 0


def _announce(obj: object, name: str) -> None:
    """Print when ``obj.name`` is called and how long it took (stall tracing)."""
    fn = getattr(obj, name)

    def wrapped(*a: object, **k: object) -> object:
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            ms = (time.perf_counter() - t) * 1000
            print(f"  {time.strftime('%X')} {name} took {ms:.1f} ms", flush=True)

    setattr(obj, name, wrapped)


def _watch(last: list[float]) -> None:
    """A thread that prints where the GUI thread is while it is late by more than 40 ms."""
    import threading
    import traceback

    gui = threading.get_ident()

    def run() -> None:
        seen = -1.0
        while True:
            time.sleep(0.005)
            if time.perf_counter() - last[0] > 0.04 and last[0] != seen:
                seen = last[0]
                frame = sys._current_frames().get(gui)
                stack = "".join(traceback.format_stack(frame, limit=12)) if frame else "?"
                print(f"--- stall at {time.strftime('%X')}:\n{stack}", flush=True)

    threading.Thread(target=run, daemon=True, name="stall-watch").start()


if __name__ == "__main__":
    raise SystemExit(main())
