"""Take docs/screenshots/quantize.png from the real window: Gemma 3 270M F16 as the source,
Q2_K, IQ3_XXS and IQ2_XS ticked, "Make importance matrix" running (progress and ETA), then a
Q8_0 and a Q4_K_M queued behind it.

    QT_QPA_PLATFORM=offscreen python3 bench/screenshot_quantize.py [--model F16.gguf]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/tmp/gm/gemma-3-270m-F16.gguf")
    parser.add_argument("--size", default="1404x860")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots" / "quantize.png"))
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = Path(tempfile.mkdtemp(prefix="ql-shot-"))
    os.environ["QUANTLENS_HOME"] = str(home)

    from PySide6.QtCore import QCoreApplication

    from qtapp.ui.app import create_app
    from qtapp.ui.main_window import MainWindow

    app = create_app()
    window = MainWindow()
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.show()
    window.show_page("quantize")
    page = window.pages["quantize"]
    page.options.out_dir.set_text(str(home / "quants"))
    page.set_source(args.model)
    page.picker.set_checked(["Q2_K", "IQ3_XXS", "IQ2_XS"])
    maker = page.imatrix_maker

    def pump(until: object, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not until():  # type: ignore[operator]
            if time.monotonic() > deadline:
                return False
            QCoreApplication.processEvents()
            time.sleep(0.02)  # a polling script, not a test: let the worker child run
        return True

    pump(lambda: maker.model is not None, 10)
    maker.make()
    page.queue(args.model, ["Q8_0", "Q4_K_M"])
    if not pump(lambda: "ETA" in maker.bar.text() and maker.bar.value() > 40, 300):
        print("timed out waiting for progress", file=sys.stderr)
        return 1
    for _ in range(20):
        QCoreApplication.processEvents()
    window.grab().save(args.out)
    print(f"saved {args.out}: {maker.bar.text()}")
    maker.cancel()
    page.cancel_all()
    pump(lambda: maker.runner is None, 20)
    window.close()
    del app
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
