"""How fast the Compare view opens and redraws with 100 runs of 1,000-point curves.

Fills a fresh results store (in a temporary QUANTLENS_HOME) with ``--runs`` finished evaluations,
each with a PPL curve (with errors) and a KLD curve of ``--points`` points, then times, offscreen:

* open: building the page (store open, start-up recovery, table, charts), showing it and the
  event processing that lays it out and paints it;
* refresh: what ``ctx.results_changed`` triggers (re-read the store, table, the visible chart)
  and a synchronous repaint;
* curves: on the Curves tab, selecting every run so all 100 are overlaid, and a repaint.

Each is repeated ``--repeat`` times; wall-clock median and worst, and this process's CPU time
(less sensitive to other processes on a shared machine), are printed. Target: under 200 ms.
Run: ``QT_QPA_PLATFORM=offscreen python3 bench/compare_view.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["QUANTLENS_HOME"] = tempfile.mkdtemp(prefix="ql-bench-compare-")

    from qtapp.core.results.store import ResultsStore
    from tests.results_factory import fill_many

    t0 = time.perf_counter()
    with ResultsStore.open() as store:
        fill_many(store, args.runs, args.points)
    fill_s = time.perf_counter() - t0

    from qtapp.ui.app import create_app
    from qtapp.ui.common.context import AppContext
    from qtapp.ui.compare.page import Page

    app = create_app()
    ctx = AppContext()
    timings: dict[str, list[float]] = {"open": [], "refresh": [], "curves": []}
    cpu: dict[str, list[float]] = {k: [] for k in timings}  # this process's CPU time

    def clock() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def record(name: str, start: tuple[float, float]) -> None:
        wall, proc = clock()
        timings[name].append(wall - start[0])
        cpu[name].append(proc - start[1])

    for _ in range(args.repeat):
        t = clock()
        page = Page(ctx)
        page.resize(1400, 900)
        page.show()
        app.processEvents()  # type: ignore[attr-defined]  # layout and the first paint
        record("open", t)

        t = clock()
        page.refresh()
        page.repaint()  # a synchronous full paint
        record("refresh", t)

        page.tabs.setCurrentIndex(2)
        app.processEvents()  # type: ignore[attr-defined]
        t = clock()
        page.table.selectAll()
        page.repaint()
        record("curves", t)
        drawn = len(page.curves_chart.plotItem.listDataItems())
        page.table.clearSelection()
        page.shutdown()
        page.deleteLater()
        app.processEvents()  # type: ignore[attr-defined]

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"store: {args.runs} runs x {args.points} points x 2 curves, filled in {fill_s:.2f} s")
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.2f} at the end")
    print(f"curves drawn with every run selected: {drawn}")
    for name, values in timings.items():
        ms = sorted(v * 1000 for v in values)
        cpu_ms = statistics.median(cpu[name]) * 1000
        print(
            f"{name:8s} wall median {statistics.median(ms):6.1f} ms, worst {ms[-1]:6.1f} ms; "
            f"CPU median {cpu_ms:6.1f} ms ({len(ms)} runs)"
        )
    worst = max(statistics.median(v) for v in timings.values()) * 1000
    verdict = "PASS" if worst < 200 else "FAIL"
    print(f"slowest median: {worst:.1f} ms -> {verdict} (target < 200 ms)")
    return 0 if worst < 200 else 1


if __name__ == "__main__":
    sys.exit(main())
