"""Exports of the Compare table: CSV, JSON, a Markdown table for forum posts, an HTML report.

The HTML report is one self-contained file: its charts are inline SVG (see
:mod:`qtapp.core.results.svgchart`), and it lists the hardware and llama.cpp versions the runs used.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import time
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from qtapp import __version__
from qtapp.core.errors import QuantLensError
from qtapp.core.results.comparison import (
    CROSS_MODEL_NOTE,
    QUALITY_METRICS,
    WITHIN_MODEL_METRICS,
    Budget,
    CompareRow,
    frontier,
    recommend,
)
from qtapp.core.results.store import RunRecord
from qtapp.core.results.svgchart import PALETTE, Series, scatter_svg

#: (key in CompareRow, column heading, format) in table order
COLUMNS: list[tuple[str, str, str]] = [
    ("run_id", "Run", "{:d}"),
    ("model", "Model", "{}"),
    ("label", "Quant / recipe", "{}"),
    ("kind", "Kind", "{}"),
    ("state", "State", "{}"),
    ("size_gib", "Size (GiB)", "{:.3f}"),
    ("bpw", "BPW", "{:.2f}"),
    ("ppl", "PPL", "{:.4f}"),
    ("ppl_err", "PPL ±", "{:.4f}"),
    ("bpb", "Bits/byte", "{:.4f}"),
    ("acc", "Task acc %", "{:.2f}"),
    ("dppl_pct", "ΔPPL %", "{:+.2f}"),
    ("kld_mean", "Mean KLD", "{:.5f}"),
    ("kld_p99", "99% KLD", "{:.4f}"),
    ("same_top_pct", "Same top %", "{:.2f}"),
    ("pp_tps", "pp t/s", "{:.1f}"),
    ("tg_tps", "tg t/s", "{:.1f}"),
    ("speed_source", "Speed", "{}"),
    ("fits", "Fits", "{}"),
    ("note", "Note", "{}"),
]


def cell(row: CompareRow, key: str, fmt: str) -> str:
    value = getattr(row, key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    try:
        text = fmt.format(value)
    except (ValueError, TypeError):
        text = str(value)
    if key in ("pp_tps", "tg_tps") and row.speed_source == "predicted":
        text += "*"  # see PREDICTED_NOTE
    return text


PREDICTED_NOTE = "\\* predicted speed (no measurement yet)"


def to_csv(rows: Sequence[CompareRow]) -> str:
    """Plain numbers (full precision) under machine-friendly headers: the CompareRow fields."""
    out = io.StringIO()
    keys = [k for k, _h, _f in COLUMNS] + ["ppl_err", "need_gib", "fingerprint", "created"]
    keys = list(dict.fromkeys(keys))
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        data = row.to_dict()
        writer.writerow({k: "" if data[k] is None else data[k] for k in keys})
    return out.getvalue()


def to_json(rows: Sequence[CompareRow], runs: Sequence[RunRecord] = ()) -> str:
    by_id = {r.id: r for r in runs}
    payload: dict[str, Any] = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quantlens": __version__,
        "environments": environments(runs),
        "runs": [],
    }
    for row in rows:
        item = row.to_dict()
        run = by_id.get(row.run_id)
        if run is not None:
            item.update(
                model_path=run.model_path,
                recipe=run.recipe,
                settings=run.settings,
                metrics=run.metrics,
                hardware=run.hardware,
                llama_version=run.llama_version,
                message=run.message,
            )
        payload["runs"].append(item)
    return json.dumps(payload, indent=2, default=str)


def to_markdown(rows: Sequence[CompareRow]) -> str:
    """A GitHub-flavoured table, numbers right-aligned, ready to paste into a forum post."""
    cols = [
        c
        for c in COLUMNS
        if c[0] not in ("run_id", "kind", "note", "speed_source")
        and any(getattr(r, c[0]) not in (None, "") for r in rows)
    ]
    lines = [
        "| " + " | ".join(h for _k, h, _f in cols) + " |",
        "|" + "|".join("---:" if f != "{}" else "---" for _k, _h, f in cols) + "|",
    ]
    for row in rows:
        cells = [cell(row, k, f).replace("|", "\\|").replace("*", "\\*") for k, _h, f in cols]
        lines.append("| " + " | ".join(cells) + " |")
    if any(r.speed_source == "predicted" for r in rows):
        lines += ["", PREDICTED_NOTE]
    return "\n".join(lines) + "\n"


def environments(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """The distinct hardware / llama.cpp combinations the runs were made on."""
    seen: dict[str, dict[str, Any]] = {}
    for run in runs:
        env = {"hardware": run.hardware or {}, "llama_version": run.llama_version}
        seen.setdefault(json.dumps(env, sort_keys=True, default=str), env)
    return list(seen.values())


def _describe_hardware(hw: dict[str, Any]) -> str:
    if not hw:
        return "not recorded"
    gpus = hw.get("gpus") or []
    parts = []
    for gpu in gpus if isinstance(gpus, list) else []:
        if isinstance(gpu, dict):
            vram = gpu.get("total_bytes") or gpu.get("memory_total")
            size = f" {vram / 1024**3:.0f} GiB" if isinstance(vram, (int, float)) else ""
            parts.append(f"{gpu.get('name', 'GPU')}{size}")
    driver = hw.get("driver_version") or hw.get("driver")
    if driver:
        parts.append(f"driver {driver}")
    host_info = hw.get("host")
    host: dict[str, Any] = host_info if isinstance(host_info, dict) else {}
    cpu = hw.get("cpu") or host.get("cpu_model")
    if cpu:
        parts.append(str(cpu))
    if host.get("ram_total_bytes"):
        parts.append(f"{host['ram_total_bytes'] / 1024**3:.0f} GiB RAM")
    return ", ".join(parts) or json.dumps(hw, default=str)[:200]


def quality_chart_svg(
    rows: Sequence[CompareRow], metric: str = "kld", budget: Budget | None = None
) -> str:
    """Quality against size, one colour per model, each model's Pareto frontier joined."""
    key, name = QUALITY_METRICS[metric]
    series = []
    for i, model in enumerate(sorted({r.model for r in rows})):
        mine = [
            r
            for r in rows
            if r.model == model and r.size_gib is not None and r.quality(metric) is not None
        ]
        if not mine:
            continue
        color = PALETTE[i % len(PALETTE)]
        series.append(
            Series(
                model,
                [r.size_gib or 0 for r in mine],
                [r.quality(metric) or 0 for r in mine],
                color,
                labels=[r.label for r in mine],
            )
        )
        front = frontier(mine, metric)
        series.append(
            Series(
                "",
                [r.size_gib or 0 for r in front],
                [r.quality(metric) or 0 for r in front],
                color,
                points=False,
                line=True,
                dashed=True,
            )
        )
    vlines = [(budget.usable_gib, f"budget {budget.name}")] if budget else []
    log_y = metric == "kld"  # KLD spans decades, 0.001 (Q8_0) to 0.3 (Q2_K)
    return scatter_svg(
        series,
        f"{name} vs size (lower is better; dashed: Pareto frontier)",
        "size (GiB)",
        f"{name}{' (log scale)' if log_y else ''}",
        vlines,
        log_y=log_y,
    )


def speed_chart_svg(rows: Sequence[CompareRow]) -> str:
    series = []
    for i, model in enumerate(sorted({r.model for r in rows})):
        mine = [
            r for r in rows if r.model == model and r.size_gib is not None and r.tg_tps is not None
        ]
        if mine:
            series.append(
                Series(
                    f"{model} tg",
                    [r.size_gib or 0 for r in mine],
                    [r.tg_tps or 0 for r in mine],
                    PALETTE[i % len(PALETTE)],
                    labels=[r.label + ("*" if r.speed_source == "predicted" else "") for r in mine],
                )
            )
    return scatter_svg(series, "Generation speed vs size (* predicted)", "size (GiB)", "tokens/s")


def to_html(
    rows: Sequence[CompareRow],
    runs: Sequence[RunRecord] = (),
    metric: str = "kld",
    budget: Budget | None = None,
    title: str = "QuantLens results",
) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for _k, h, _f in COLUMNS)
    body = []
    for row in rows:
        tds = "".join(
            f'<td class="{"num" if f != "{}" else "txt"}">{escape(cell(row, k, f))}</td>'
            for k, _h, f in COLUMNS
        )
        body.append(f"<tr>{tds}</tr>")
    envs = (
        "".join(
            f"<li>{escape(_describe_hardware(e['hardware']))}; "
            f"{escape(e['llama_version'] or 'llama.cpp version not recorded')}</li>"
            for e in environments(runs)
        )
        or "<li>no runs</li>"
    )
    found = recommend(rows, metric, budget)
    recs = "".join(f"<li>{escape(r.text)}</li>" for r in found)
    if len(found) > 1 and metric in WITHIN_MODEL_METRICS:
        recs += f"<li><i>{escape(CROSS_MODEL_NOTE)}</i></li>"
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}
table{{border-collapse:collapse;font-size:13px}}
th,td{{border:1px solid #ccc;padding:3px 7px}} th{{background:#f3f3f3}}
td.num{{text-align:right;font-variant-numeric:tabular-nums}}
.charts{{display:flex;flex-wrap:wrap;gap:16px;margin:16px 0}}
</style></head><body>
<h1>{escape(title)}</h1>
<p>Generated by QuantLens {escape(__version__)} on {generated}; {len(rows)} runs.</p>
<h2>Hardware and versions</h2><ul class="env">{envs}</ul>
<h2>Recommendations</h2><ul>{recs or "<li>no quality measurements yet</li>"}</ul>
<h2>Charts</h2>
<div class="charts">{quality_chart_svg(rows, metric, budget)}{speed_chart_svg(rows)}</div>
<h2>Runs</h2>
<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>
</body></html>
"""


FORMATS = ("csv", "json", "md", "html")


def export(
    rows: Sequence[CompareRow],
    fmt: str,
    runs: Sequence[RunRecord] = (),
    metric: str = "kld",
    budget: Budget | None = None,
) -> str:
    if fmt == "csv":
        return to_csv(rows)
    if fmt == "json":
        return to_json(rows, runs)
    if fmt == "md":
        return to_markdown(rows)
    if fmt == "html":
        return to_html(rows, runs, metric, budget)
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")


def write_export(path: str | Path, text: str) -> Path:
    """Write atomically (``.part`` then rename), so a full disk leaves no half report."""
    target = Path(path)
    part = target.with_name(target.name + ".part")
    try:
        part.write_text(text, encoding="utf-8")
        part.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):  # e.g. the "folder" is a file: nothing was written
            part.unlink(missing_ok=True)
        raise QuantLensError(
            f"Could not write {target}: {exc.strerror or exc}.",
            "Choose another folder or free some disk space.",
        ) from exc
    return target
