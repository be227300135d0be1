"""Take docs/screenshots/tailor.png from the real window: the Fit page's "Tailor to this
budget…" on a replayed H200 (or a what-if), the dialog drawn over the window where it opens.

Writes three files: ``-cost`` (before the start), ``-scan`` (during the scan) and the final
one (the saved recipe, its row selected in the Fit table). The model is the tiny F16 llama of
``qtapp.testing`` unless ``--model`` names another full-precision GGUF (a real one scans for
minutes).

    QT_QPA_PLATFORM=offscreen python3 bench/screenshot_tailor.py [--what-if 1x8GiB]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a full-precision GGUF (default: the tiny llama)")
    parser.add_argument("--size", default="1280x860")
    parser.add_argument("--what-if", default="", help='what-if GPUs, e.g. "1x8GiB"')
    parser.add_argument("--ctx", type=int, default=0, help="the Fit page's context")
    parser.add_argument("--candidates", default="", help="scan candidates, e.g. Q4_K,Q6_K")
    parser.add_argument("--bands", type=int, default=4, help="layer bands of the scan")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots" / "tailor.png"))
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault(
        "QUANTLENS_NVML_REPLAY", str(REPO / "tests" / "fixtures" / "nvml" / "h200-idle.json")
    )
    home = Path(tempfile.mkdtemp(prefix="ql-shot-"))
    os.environ["QUANTLENS_HOME"] = str(home)
    model = args.model
    if not model:
        from qtapp.testing.tiny import TinySpec, write_tiny_llama

        model = str(write_tiny_llama(home / "models" / "tiny-llama-F16.gguf", TinySpec()))

    from PySide6.QtCore import QCoreApplication, QPoint, QRect, Qt
    from PySide6.QtGui import QColor, QPainter

    from qtapp.ui.app import create_app
    from qtapp.ui.main_window import MainWindow

    app = create_app()
    window = MainWindow()
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.show()
    window.open_model(model)
    window.show_page("fit")
    page = window.pages["fit"]
    page.controls.what_if.setText(args.what_if)
    from qtapp.core.tailor.scan import ScanSettings

    if args.candidates:
        page.tailor_settings = ScanSettings(
            candidates=tuple(args.candidates.split(",")), bands=args.bands
        )

    def wait(cond: Callable[[], bool], what: str, seconds: float = 300) -> None:
        deadline = time.monotonic() + seconds
        while not cond():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            QCoreApplication.processEvents()
            time.sleep(0.02)  # a polling script, not a test: let the worker children run

    wait(lambda: page.plan is not None and not page.is_busy(), "the plan")
    if args.ctx:
        page.controls.ctx_box.setValue(args.ctx)
        wait(lambda: page.plan.settings.n_ctx == args.ctx and not page.is_busy(), "replan")
    dialog = page.open_tailor()
    assert dialog is not None
    wait(lambda: dialog.state in ("ready", "refused"), "the cost")

    def shot(path: Path, corner: bool = False) -> None:
        for _ in range(20):
            QCoreApplication.processEvents()
        image = window.grab()
        over = dialog.grab()
        painter = QPainter(image)
        title_h = 28
        at = QPoint(
            max(0, (image.width() - over.width()) // 2),
            max(title_h, (image.height() - over.height()) // 3),
        )
        if corner:  # bottom left, over the run settings: the table and its new row stay visible
            at = QPoint(10, image.height() - over.height() - 12)
        # what a window manager would draw: a shadow, a title bar and a frame
        frame = QRect(at.x() - 1, at.y() - title_h, over.width() + 2, over.height() + title_h + 1)
        painter.fillRect(frame.translated(4, 5), QColor(0, 0, 0, 60))
        painter.fillRect(frame, QColor("#dde1e6"))
        painter.setPen(QColor("#222"))
        painter.drawText(
            QRect(frame.x(), frame.y(), frame.width(), title_h),
            Qt.AlignmentFlag.AlignCenter,
            dialog.windowTitle(),
        )
        painter.drawPixmap(at, over)
        painter.setPen(QColor("#8a9099"))
        painter.drawRect(frame)
        painter.end()
        image.save(str(path))
        print(f"saved {path}")

    out = Path(args.out)
    shot(out.with_name(out.stem + "-cost.png"))
    progress: list[object] = []
    dialog.start()
    wait(lambda: dialog.runner is not None or dialog.state != "scanning", "the job")
    if dialog.runner is not None:
        dialog.runner.event.connect(progress.append)
        wait(lambda: len(progress) > 8 or dialog.state != "scanning", "progress")
        shot(out.with_name(out.stem + "-scan.png"))
    wait(lambda: dialog.state in ("done", "failed"), "the recipe", 900)
    if dialog.result is not None:
        name = dialog.result.recipe.name
        wait(lambda: page.plan is not None and page.plan.row(name) is not None, "the row")
        page.select_recipe(name)
        wait(lambda: not page.is_busy(), "exact figures")
        page.select_recipe(name)
    shot(out, corner=True)
    print(dialog.message.text())
    window.close()
    del app
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
