"""How fast does the Fit page follow its controls? Milliseconds from a control to a repaint.

One step runs from a control change to a repainted table.

    python3 bench/fit_responsiveness.py [--steps 20]

Opens the Gemma-shaped tiny model (``write_tiny_gemma3``: 38 plan rows) on the Fit page,
offscreen at 1400x900, waits until llama.cpp's exact figures are in (no worker competes for the
CPU), then changes each control ``--steps`` times. One step is the whole chain a user triggers:
the control's signal, the zero-delay replan timer, the table update and the repaint it posts.
To measure another checkout (e.g. the code before a change), run this file with ``PYTHONPATH``
pointing at that checkout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QUANTLENS_HOME", tempfile.mkdtemp(prefix="quantlens-bench-"))
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="changes per control")
    args = parser.parse_args()

    from PySide6.QtWidgets import QApplication

    from qtapp.testing.archs import write_tiny_gemma3
    from qtapp.ui.common.context import AppContext
    from qtapp.ui.fit.page import Page

    app = QApplication.instance() or QApplication([])
    model = write_tiny_gemma3(Path(os.environ["QUANTLENS_HOME"]) / "gemma-shaped.gguf")
    ctx = AppContext()
    page = Page(ctx)
    page.resize(1400, 900)
    page.show()
    ctx.open_model(model)
    deadline = time.monotonic() + 120
    while (page.plan is None or page.is_busy()) and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)  # a benchmark's idle wait, not a test synchronisation
    for _ in range(20):
        app.processEvents()

    def step(action: Callable[[], None]) -> float:
        t0 = time.perf_counter()
        action()
        app.processEvents()  # the zero-delay replan timer
        app.processEvents()  # the repaint it posted
        return (time.perf_counter() - t0) * 1000

    c = page.controls
    n = args.steps
    cases: dict[str, list[Callable[[], None]]] = {
        "context (spin box)": [
            lambda v=2048 * (i % 5 + 2): c.ctx_box.setValue(v) for i in range(n)
        ],
        "context (slider)": [
            lambda v=300 + 25 * (i % 9): c.ctx_slider.setValue(v) for i in range(n)
        ],
        "KV type": [
            lambda t=("q8_0", "q4_0", "f16")[i % 3]: c.kv.setCurrentText(t) for i in range(n)
        ],
        "safety margin": [lambda v=256 * (i % 8): c.margin.setValue(v) for i in range(n)],
        "what-if GPUs (1 <-> 2 GPUs)": [
            lambda t=("1x24GiB", "2x24GiB", "1x8GiB", "24GiB,12GiB")[i % 4]: c.what_if.setText(t)
            for i in range(n)
        ],
    }
    print(f"{len(page.plan.rows)} plan rows, {n} changes per control")
    print("| control | median ms | p90 ms | max ms |")
    print("|---|---|---|---|")
    for name, actions in cases.items():
        ms = sorted(step(a) for a in actions)
        p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
        print(f"| {name} | {statistics.median(ms):.1f} | {p90:.1f} | {ms[-1]:.1f} |")
    page.shutdown()
    ctx.jobs.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
