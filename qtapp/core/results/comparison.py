"""Turn stored runs into the rows of the Compare table, and answer "which fits my budget".

Qt-free, so the CLI, the HTML report and the window all say the same thing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from qtapp.core.results.pareto import pareto_front
from qtapp.core.results.store import RunRecord

GIB = 1024**3
#: what each GPU keeps free, like llama.cpp's --fit margin
DEFAULT_MARGIN_BYTES = 1024**3
BASE_LABELS = ("F32", "BF16", "F16")
QUALITY_METRICS = {
    "kld": ("kld_mean", "mean KLD"),
    "ppl": ("ppl", "PPL"),
    "bpb": ("bpb", "bits per byte"),
}
#: the metrics that rank the quants of one model only: KLD is measured against each model's own
#: base, and PPL is per token of each model's own tokenizer
WITHIN_MODEL_METRICS = ("kld", "ppl")
CROSS_MODEL_NOTE = (
    "Each line ranks one model's own quants. Mean KLD is measured against each model's own "
    "base and PPL counts each model's own tokens, so they do not say which model is better: "
    'to compare models, see "Model vs model" (task accuracy on the same tasks) or choose '
    '"Quality: bits per byte" (the same evaluation text for every model).'
)

_UNITS = {
    "": GIB,
    "g": GIB,
    "gb": 10**9,
    "gib": GIB,
    "m": 1024**2,
    "mb": 10**6,
    "mib": 1024**2,
    "t": 1024**4,
    "tb": 10**12,
    "tib": 1024**4,
}
_BUDGET_RE = re.compile(r"^\s*(?:(\d+)\s*[x×*]\s*)?(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """GPU memory to fit into: ``n_gpus`` devices of ``per_gpu_bytes`` each, minus a margin."""

    name: str
    n_gpus: int
    per_gpu_bytes: int
    margin_bytes: int = DEFAULT_MARGIN_BYTES

    @property
    def usable_bytes(self) -> int:
        return max(0, self.n_gpus * (self.per_gpu_bytes - self.margin_bytes))

    @property
    def usable_gib(self) -> float:
        return self.usable_bytes / GIB


def parse_budget(text: str, margin_bytes: int = DEFAULT_MARGIN_BYTES) -> Budget:
    """``"2x48GiB"``, ``"24 GB"``, ``"80G"``, ``"512MiB"`` -> a :class:`Budget`.

    Raises ValueError with a message that shows the accepted forms.
    """
    match = _BUDGET_RE.match(text or "")
    unit = (match[3] or "").lower() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a memory budget; write it like 24GiB or 2x48GiB")
    n = int(match[1] or 1)
    per = int(float(match[2]) * _UNITS[unit])
    if n < 1 or per <= 0:
        raise ValueError(
            f"{text!r}: the number of GPUs and their memory must be positive, e.g. 2x48GiB"
        )
    name = f"{n}x{_fmt_num(per / GIB)}GiB"
    return Budget(name, n, per, margin_bytes)


def _fmt_num(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 0.05 else f"{v:.1f}"


@dataclass(frozen=True)
class CompareRow:
    """One run as the table shows it. None means "not measured"."""

    run_id: int
    kind: str
    state: str
    model: str
    fingerprint: str
    label: str
    size_gib: float | None
    bpw: float | None
    ppl: float | None
    ppl_err: float | None
    bpb: float | None
    acc: float | None  # task accuracy %, on the run's own task file
    dppl_pct: float | None
    kld_mean: float | None
    kld_p99: float | None
    same_top_pct: float | None
    pp_tps: float | None
    tg_tps: float | None
    speed_source: str  # "measured", "predicted" or ""
    need_gib: float | None  # memory the run needs on GPUs (plan total, else the file size)
    need_is_estimate: bool
    fits: str  # budget names it fits, "" when none, "?" when unknown
    note: str
    created: float

    def quality(self, metric: str) -> float | None:
        return {"kld": self.kld_mean, "bpb": self.bpb}.get(metric, self.ppl)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _num(metrics: dict[str, object], *names: str) -> float | None:
    for name in names:
        value = metrics.get(name)
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and math.isfinite(float(value)):  # type: ignore[arg-type]
            return float(value)  # type: ignore[arg-type]
    return None


def _predicted_speeds(
    runs: Sequence[RunRecord],
) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    """(model name, quant label) -> predicted (pp, tg) tokens/s from stored plan runs."""
    out: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    for run in runs:
        if run.kind != "plan":
            continue
        rows = run.metrics.get("rows")
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and row.get("type"):
                out[(run.model_name, str(row["type"]))] = (
                    _num(row, "predicted_pp_tps"),
                    _num(row, "predicted_tg_tps"),
                )
    return out


def _bases(runs: Sequence[RunRecord]) -> dict[str, float]:
    """The base PPL of each model: the base a KLD run measured on the same text, else a run
    marked base, else F32/BF16/F16, else the most bits."""
    best: dict[str, tuple[tuple[int, float], float]] = {}
    for run in runs:
        base_ppl = _num(run.metrics, "ppl_base")
        if base_ppl is not None and run.state in ("finished", "partial"):
            key4 = (4, float(run.id or 0))
            if run.model_name not in best or key4 > best[run.model_name][0]:
                best[run.model_name] = (key4, base_ppl)
            continue
        ppl = _num(run.metrics, "ppl")
        if ppl is None or run.state not in ("finished", "partial"):
            continue
        label = run.label.upper()
        rank = 3 if run.metrics.get("is_base") else (2 if label in BASE_LABELS else 0)
        bpw = run.bpw or _num(run.metrics, "bpw") or 0.0
        key = (rank, bpw)
        if run.model_name not in best or key > best[run.model_name][0]:
            best[run.model_name] = (key, ppl)
    return {name: ppl for name, (_key, ppl) in best.items()}


def build_rows(runs: Sequence[RunRecord], budgets: Sequence[Budget] = ()) -> list[CompareRow]:
    predicted = _predicted_speeds(runs)
    bases = _bases(runs)
    rows = []
    for run in runs:
        m = run.metrics
        size_bytes = _num(m, "bytes", "file_bytes", "weights_bytes")
        if size_bytes is None and run.model_bytes:
            size_bytes = float(run.model_bytes)
        ppl = _num(m, "ppl")
        base = bases.get(run.model_name)
        dppl = None if ppl is None or not base else (ppl / base - 1) * 100
        pp, tg, source = _num(m, "pp_tps"), _num(m, "tg_tps"), ""
        if pp is not None or tg is not None:
            source = "measured"
        else:
            pp, tg = (_num(m, "predicted_pp_tps"), _num(m, "predicted_tg_tps"))
            if pp is None and tg is None:
                pp, tg = predicted.get((run.model_name, run.label), (None, None))
            source = "predicted" if pp is not None or tg is not None else ""
        need = _num(m, "vram_bytes", "total_bytes")
        estimate = need is None
        if need is None:
            need = size_bytes
        fits = "?" if need is None else ", ".join(b.name for b in budgets if need <= b.usable_bytes)
        rows.append(
            CompareRow(
                run_id=run.id,
                kind=run.kind,
                state=run.state,
                model=run.model_name,
                fingerprint=run.model_fingerprint,
                label=run.label,
                size_gib=None if size_bytes is None else size_bytes / GIB,
                bpw=_num(m, "bpw") or run.bpw,
                ppl=ppl,
                ppl_err=_num(m, "ppl_err"),
                bpb=_num(m, "bpb"),
                acc=_num(m, "acc") if run.kind == "tasks" else None,
                dppl_pct=dppl,
                kld_mean=_num(m, "kld_mean"),
                kld_p99=_num(m, "kld_p99"),
                same_top_pct=_num(m, "same_top_pct"),
                pp_tps=pp,
                tg_tps=tg,
                speed_source=source,
                need_gib=None if need is None else need / GIB,
                need_is_estimate=estimate,
                fits=fits,
                note=run.note,
                created=run.created,
            )
        )
    return rows


def frontier(rows: Iterable[CompareRow], metric: str) -> list[CompareRow]:
    """The rows on the size/quality Pareto frontier, smallest first."""
    pts = [
        (r.size_gib, quality, r)
        for r in rows
        if r.size_gib is not None and (quality := r.quality(metric)) is not None
    ]
    keys = pareto_front([(s, q, i) for i, (s, q, _r) in enumerate(pts)])
    return [pts[i][2] for i in keys]


@dataclass(frozen=True)
class Recommendation:
    model: str
    row: CompareRow | None
    text: str


def recommend(
    rows: Sequence[CompareRow], metric: str, budget: Budget | None
) -> list[Recommendation]:
    """For each model: the best quality among its runs that fit the budget, and why."""
    name = QUALITY_METRICS[metric][1]
    out = []
    models = sorted({r.model for r in rows if r.quality(metric) is not None})
    for model in models:
        mine = [
            r
            for r in rows
            if r.model == model and r.quality(metric) is not None and r.need_gib is not None
        ]
        if budget is None:
            fitting = mine
        else:
            fitting = [
                r
                for r in mine
                if r.need_gib is not None and r.need_gib * GIB <= budget.usable_bytes
            ]
        if not fitting:
            smallest = min(mine, key=lambda r: r.need_gib or 0.0, default=None)
            text = f"{model}: nothing measured fits"
            if smallest is not None and budget is not None:
                text += (
                    f" {budget.name} ({budget.usable_gib:.1f} GiB usable); the smallest, "
                    f"{smallest.label}, needs {smallest.need_gib:.2f} GiB"
                )
            out.append(Recommendation(model, None, text))
            continue
        best = min(fitting, key=lambda r: (r.quality(metric), r.need_gib))
        out.append(
            Recommendation(
                model,
                best,
                (
                    f"{model}: {best.label} — {best.size_gib or 0:.2f} GiB, "
                    f"{name} {best.quality(metric):.4g}"
                ),
            )
        )
    return out
