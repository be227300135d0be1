"""Take docs/screenshots/evaluate-depth.png and compare-context.png: the Evaluate page measuring
real Gemma 3 270M quants at several depths (curves, ± sd bands, predicted curves dashed), then
the Compare page's "Speed at your context" tab on the runs it stored.

    QT_QPA_PLATFORM=offscreen python3 bench/screenshot_speed.py --depths 0,512,1024,2048
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
QUANTS = REPO / "bench" / "out" / "fit" / "quants"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="0,512,1024,2048")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--context", type=int, default=1536)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QUANTLENS_HOME", tempfile.mkdtemp(prefix="ql-shot-"))
    from PySide6.QtWidgets import QApplication

    from qtapp.ui.common.context import AppContext
    from qtapp.ui.compare.page import Page as ComparePage
    from qtapp.ui.evaluate.page import Page

    app = QApplication.instance() or QApplication([])
    ctx = AppContext()
    page = Page(ctx)
    page.resize(1440, 920)
    page.show()
    page.controls.depths.setText(args.depths)
    page.controls.ctx.setValue(512)
    models = [QUANTS / f"gemma-3-270m-Q4_K_M-{t}.gguf" for t in ("Q8_0", "Q2_K")]
    done = []
    page.all_done.connect(lambda: done.append(1))
    page.queue(models, None, 3, True, args.reps)
    while not done:
        app.processEvents()
        QApplication.instance().thread().msleep(20)  # type: ignore[union-attr]
    page.wait_stored()
    for _ in range(30):
        app.processEvents()
        QApplication.instance().thread().msleep(20)  # type: ignore[union-attr]
    args.out.mkdir(parents=True, exist_ok=True)
    page.grab().save(str(args.out / "evaluate-depth.png"))
    compare = ComparePage(ctx)
    compare.resize(1400, 900)
    compare.show()
    compare.tabs.setCurrentWidget(compare.context_speed)
    compare.context_speed.context.setValue(args.context)
    for _ in range(30):
        app.processEvents()
        QApplication.instance().thread().msleep(20)  # type: ignore[union-attr]
    compare.grab().save(str(args.out / "compare-context.png"))
    page.shutdown()
    compare.shutdown()
    ctx.jobs.shutdown()
    print(args.out / "evaluate-depth.png", args.out / "compare-context.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
