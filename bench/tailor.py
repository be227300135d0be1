"""Tailor (issue #13), measured: the tailored mix against the standard type of the same size.

For Gemma 3 270M F16 and budgets equal to the exact weights size (llama.cpp's dry run) of
Q3_K_M, Q4_K_M and Q5_K_M: the scan (default settings, Leviticus-Numbers, its cost printed and
timed), the knapsack, the recipe quantized for real, then mean KLD and 99% KLD against the F16
on Genesis-Exodus (a text the scan never saw) for the tailored file, the standard type and the
built-in ``*_XL`` recipe of that type. Writes ``bench/out/tailor/result.json`` and the section
between the markers in BENCHMARKS.md.

    nice -n 19 .venv/bin/python bench/tailor.py [--model /tmp/gm/gemma-3-270m-F16.gguf]
        [--eval-chunks 12] [--bands 4] [--scan-ctx 256] [--scan-chunks 1] [--no-write]

Untimed except the scan (its seconds are what the CLI shows before it starts); run it niced.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_sections import write_section  # noqa: E402

OUT = ROOT / "bench" / "out" / "tailor"
MARK_START = "<!-- bench/tailor.py:start -->"
MARK_END = "<!-- bench/tailor.py:end -->"
BUDGETS = ("Q3_K_M", "Q4_K_M", "Q5_K_M")
XL = {"Q3_K_M": "Q3_K_XL", "Q4_K_M": "Q4_K_XL", "Q5_K_M": "Q5_K_XL"}
EVAL_TEXT = ROOT / "resources" / "texts" / "kjv-genesis-exodus.txt"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("/tmp/gm/gemma-3-270m-F16.gguf"))
    ap.add_argument("--eval-chunks", type=int, default=12)
    ap.add_argument("--bands", type=int, default=4)
    ap.add_argument("--scan-ctx", type=int, default=256)
    ap.add_argument("--scan-chunks", type=int, default=1)
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QUANTLENS_HOME", str(OUT / "home"))  # caches survive reruns

    from qtapp.core.gguf.model import read_model
    from qtapp.core.jobs.events import Progress
    from qtapp.core.tailor import tailor as core
    from qtapp.core.tailor.measure import measure, standard_sizes
    from qtapp.core.tailor.recipe import recipe_name
    from qtapp.core.tailor.scan import ScanSettings, run_scan, scan_cost

    m = read_model(args.model)
    settings = ScanSettings(bands=args.bands, ctx=args.scan_ctx, chunks=args.scan_chunks)
    cost = scan_cost(m, settings)
    print(f"scan: {cost.describe()}", flush=True)
    t0 = time.monotonic()

    def progress(ev: Any) -> None:
        if isinstance(ev, Progress) and ev.detail.get("phase") == "scan":
            print(f"  {time.monotonic() - t0:6.0f} s  {ev.message}", flush=True)

    scan, terminal = run_scan(m, settings, on_event=progress)
    if scan is None:
        sys.exit(f"scan failed: {terminal}")
    res: dict[str, Any] = {
        "model": str(args.model),
        "settings": {"bands": args.bands, "ctx": args.scan_ctx, "chunks": args.scan_chunks},
        "eval_chunks": args.eval_chunks,
        "scan": {
            "estimate_s": cost.seconds,
            "evals": scan.evals,
            "seconds": scan.seconds,
            "seconds_per_eval": scan.raw.get("seconds_per_eval"),
            "reference_kld": scan.reference_kld,
            "cached": scan.cached,
        },
        "cores": len(os.sched_getaffinity(0)),
        "rows": [],
    }
    sizes = standard_sizes(m, (*BUDGETS, *XL.values()))
    out_dir = OUT / "models"
    out_dir.mkdir(exist_ok=True)
    done: dict[str, Any] = {}
    if (OUT / "measured.json").is_file():
        done = json.loads((OUT / "measured.json").read_text())
    for std in BUDGETS:
        name = recipe_name("gemma-3-270m", sizes[std])  # as the CLI names it
        t = core.tailor_to_budget(scan, sizes[std], name)
        core.confirm_size(m, t)
        core.save(t)
        row: dict[str, Any] = {
            "budget": std,
            "budget_bytes": sizes[std],
            "tailored_bytes": t.bytes,
            "predicted_kld": t.solution.predicted_kld,
            "choice": t.solution.choice,
            "xl_bytes": sizes[XL[std]],
        }
        common: dict[str, Any] = {"out_dir": out_dir, "text": EVAL_TEXT, "chunks": args.eval_chunks}
        for key, target, recipe in (
            ("tailored", name, t.recipe),
            ("standard", std, None),
            ("xl", XL[std], None),
        ):
            # a measurement is reused while the file's recipe and the evaluation are the same
            tag = json.dumps([target, recipe.to_dict() if recipe else None, args.eval_chunks])
            if tag not in done:
                print(f"measuring {target}", flush=True)
                done[tag] = measure(m, target, recipe=recipe, overwrite=True, **common)
                (OUT / "measured.json").write_text(json.dumps(done, indent=1))
            row[key] = done[tag]
        res["rows"].append(row)
        (OUT / "result.json").write_text(json.dumps(res, indent=1))
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", section(res), MARK_START, MARK_END)
    print(section(res))
    return 0


def _mib(b: float) -> str:
    return f"{b / 2**20:.2f}"


def _k(r: dict[str, Any], key: str = "kld_mean") -> str:
    v = r.get(key)
    return "-" if v is None else f"{v:.4f}"


def section(res: dict[str, Any]) -> str:
    s = res["scan"]
    lines = [
        MARK_START,
        "## Tailor: the best per-tensor mix for a budget (bench/tailor.py, issue #13)",
        "",
        f"Gemma 3 270M F16 on {res['cores']} cores. Scan: {res['settings']['bands']} layer bands"
        f" x tensor class, candidates Q2_K..Q6_K, the rest at Q8_0, 1 chunk of "
        f"{res['settings']['ctx']} tokens of Leviticus-Numbers; {s['evals']} evaluations, "
        f"{s['seconds']:.0f} s ({s['seconds_per_eval']:.1f} s each, niced on this shared host at "
        f"a load of about 7; shown before the start: about {s['estimate_s'] / 60:.1f} min, from "
        "the earlier scan's speed). Budgets: the exact weights size of each type "
        "(llama.cpp's dry run). Mean and 99% KLD against the F16 measured on "
        f"Genesis-Exodus ({res['eval_chunks']} chunks of 512), a text the scan did not see.",
        "",
        # timed_s / timed_estimate_s: a separate run of the CLI under the bench lock (the scan
        # above runs niced beside other work), put into result.json's "scan" by hand
        *(
            [
                f"Timed alone (`flock /tmp/ql-bench.lock nice -n 0 quantlens tailor ... "
                f"--no-measure`, fresh caches): {s['timed_s']:.0f} s for the whole command, "
                f"the scan's {s['evals']} evaluations, base log-probs and quantizations "
                f"included; shown before the start: about {s['timed_estimate_s'] / 60:.1f} min.",
                "",
            ]
            if "timed_s" in s
            else []
        ),
        "| budget | tailored MiB | predicted | tailored mean / 99% KLD | type MiB | type mean / "
        "99% KLD | *_XL MiB | *_XL mean / 99% KLD | tailored wins |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        t, std, xl = r["tailored"], r["standard"], r["xl"]
        win = (
            t["bytes"] <= std["bytes"]
            and t["kld_mean"] < std["kld_mean"]
            and t["kld_p99"] < std["kld_p99"]
        )
        lines.append(
            f"| {r['budget']} | {_mib(r['tailored_bytes'])} | {r['predicted_kld']:.4f} | "
            f"{_k(t)} / {_k(t, 'kld_p99')} | {_mib(r['budget_bytes'])} | {_k(std)} / "
            f"{_k(std, 'kld_p99')} | {_mib(r['xl_bytes'])} | {_k(xl)} / {_k(xl, 'kld_p99')} | "
            f"{'yes' if win else 'no'} |"
        )
    lines += [
        "",
        "Predicted: on the calibration window (the scan's reference plus the groups' corrected "
        "increases), so only its order matters, not its level against the measured column.",
        "",
        "Why the Q4_K_M budget loses: where its mix has fewer bits than Q4_K_M is attn_v of "
        "layers 0-1 (Q5_1 against Q8_0) and ffn_down of layers 4 and 7 (Q4_K against Q6_K) "
        "and 10, 13, 15 (Q5_K against Q6_K): llama.cpp gives Q6_K to every third layer, the "
        "mix chooses per band of 7 layers; elsewhere it has as many bits or more (attn_v Q8_0"
        " in layers 2-17, ffn_down Q5_K in 9, 11, 12, 14). The same mix with attn_v 0-1 at "
        "Q8_0 measured 0.0338 / 0.368, so most of the gap is ffn_down of single layers (4, 7,"
        " 10, 13, 15) that a band of 7 layers scored on 127 tokens cannot single out: the "
        "scan saw +0.006 for the whole band 2-8 at Q4_K. Q5_K_M loses to both tailored mixes "
        "because it puts every 640-column tensor at Q5_1 (the fallback of Q5_K), which the "
        "scan measured worse than Q5_0 (whole model at Q5_K: 0.079 KLD against 0.066 at Q4_K "
        "on the window). Next: a longer calibration window and per-layer groups for ffn_down,"
        " at 2-4x the cost of the scan.",
        "",
        "Earlier run (2 bands, layer halves, increases taken as measured): Q3_K_M budget "
        "203.9 MiB, 0.0348 / 0.325; Q4_K_M budget 235.1 MiB, 0.0400 / 0.479. The whole-model "
        "correction and the edge bands are in since; they moved the Q4_K_M mix only a little.",
        "",
        "MiB: tensor bytes (file sizes differ by the same header). Command: "
        "`nice -n 19 .venv/bin/python bench/tailor.py` (the CLI: `quantlens tailor MODEL "
        "--budget SIZE --out DIR --json`).",
        MARK_END,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
