"""Take docs/screenshots/compare.png from the real window, on a real or a sample results store.

With real results (e.g. the Gemma 3 270M quants evaluated by the app), point ``--home`` at the
QUANTLENS_HOME that holds them. ``--sample`` fills a fresh store with the test suite's plausible
runs instead (tests/results_factory.py), for when no real results exist yet.

    QT_QPA_PLATFORM=offscreen python3 bench/screenshot_compare.py --home ~/.ql --budget 1.5GiB
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="QUANTLENS_HOME with the results to show")
    parser.add_argument("--sample", action="store_true", help="use sample runs in a fresh home")
    parser.add_argument("--budget", default="", help='the "what if" budget, e.g. 2x48GiB')
    parser.add_argument("--metric", choices=("kld", "ppl", "bpb"), default="kld")
    parser.add_argument("--tab", type=int, default=0, help="0 quality, 1 speed, 2 curves")
    parser.add_argument("--select", default="Q8_0,Q4_K_M,Q2_K", help="labels to select")
    parser.add_argument("--size", default="1400x900")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots" / "compare.png"))
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.sample or not args.home:
        os.environ["QUANTLENS_HOME"] = tempfile.mkdtemp(prefix="ql-shot-")
        from qtapp.core.results.store import ResultsStore
        from tests.results_factory import fill_store

        with ResultsStore.open() as store:
            fill_store(store)
    else:
        os.environ["QUANTLENS_HOME"] = str(Path(args.home).expanduser())

    from qtapp.ui.app import create_app
    from qtapp.ui.main_window import MainWindow

    app = create_app()
    window = MainWindow()
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.show()
    window.show_page("compare")
    page = window.pages["compare"]
    page.metric_box.setCurrentIndex(page.metric_box.findData(args.metric))
    page.budget_edit.setText(args.budget)
    page.refresh()
    wanted = set(args.select.split(","))
    first_model = page.rows[0].model if page.rows else ""
    page.table.select_runs(
        [r.run_id for r in page.rows if r.label in wanted and r.model == first_model]
    )
    page.tabs.setCurrentIndex(args.tab)
    for _ in range(20):
        app.processEvents()  # type: ignore[attr-defined]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(out))
    print(f"saved {out}")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
