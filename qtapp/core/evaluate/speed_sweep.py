"""Speed sweeps, parent side: depths and their checks, the job's params, and the planner's
predicted curve drawn beside the measured one (shared by ``quantlens speed`` and the window).

A depth sweep measures llama-bench's pp and tg with ``depth`` tokens already in the KV cache
(``llama-bench -d``); it opens contexts of up to ``max(depths) + max(n_prompt, n_gen)`` tokens.
Before anything starts, a depth beyond the model's trained context, or a context the plan says
does not fit this machine, is refused with one clear message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError

#: the depths the Evaluate page offers first: llama-bench's default (0) and a few fills
DEFAULT_DEPTHS = (0,)
MAX_DEPTH = 1 << 24


def parse_depths(text: str | Sequence[int] | None) -> list[int]:
    """``"0,1024, 4096"`` (or ``4k``) -> ``[0, 1024, 4096]``; a bad item raises one clear line."""
    if text is None:
        return list(DEFAULT_DEPTHS)
    if not isinstance(text, str):
        items: list[str] = [str(v) for v in text]
    else:
        items = [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]
    if not items:
        raise QuantLensError("No depth given.", "Give depths like 0,1024,4096.")
    out: list[int] = []
    for item in items:
        raw = item.lower().replace("_", "")
        mult = 1024 if raw.endswith("k") else 1
        try:
            value = int(raw[:-1] if mult > 1 else raw) * mult
        except ValueError:
            raise QuantLensError(
                f"Cannot read the depth {item!r}.",
                "Give whole numbers of tokens separated by commas, like 0,1024,4096 (or 4k).",
            ) from None
        if value < 0 or value > MAX_DEPTH:
            raise QuantLensError(
                f"The depth {value} is out of range.", f"Use 0 to {MAX_DEPTH:,} tokens."
            )
        if value not in out:
            out.append(value)
    return out


def this_machine() -> tuple[Any, bool | None]:
    """This machine's hardware report (None: no GPU or no NVML) and whether the installed
    llama.cpp build offloads (None: not probed yet): what a sweep is planned on."""
    from qtapp.core.fit.devices import probe_devices
    from qtapp.core.hardware.llama_build import cached_build

    report = None
    if probe_devices():
        from qtapp.core.hardware.probe import probe_hardware

        report = probe_hardware()
    build = cached_build()
    return report, (build.supports_gpu_offload if build is not None else None)


def sweep_context(depths: Sequence[int], n_prompt: int = 512, n_gen: int = 128) -> int:
    """The largest context the sweep opens (llama-bench: n_prompt + n_gen + depth per test)."""
    return max(depths or [0]) + max(n_prompt, n_gen, 1)


def sweep_params(
    model: str | Path,
    depths: Sequence[int],
    reps: int = 5,
    threads: int | None = None,
    n_gpu_layers: int | None = None,
    n_cpu_moe: int = 0,
    n_prompt: int = 512,
    n_gen: int = 128,
) -> dict[str, Any]:
    """The ``speed_sweep`` job's params, JSON-ready."""
    params: dict[str, Any] = {
        "model": str(model),
        "depths": [int(d) for d in depths],
        "reps": int(reps),
        "n_prompt": int(n_prompt),
        "n_gen": int(n_gen),
    }
    if threads:
        params["threads"] = int(threads)
    if n_gpu_layers is not None:
        params["n_gpu_layers"] = int(n_gpu_layers)
    if n_cpu_moe:
        params["n_cpu_moe"] = int(n_cpu_moe)
    return params


@dataclass
class SweepPlan:
    """What the planner says of a sweep before it starts: the plan row at its largest context
    and a predicted (tg, pp) per depth."""

    row: Any  # a PlanRow for the file as it is
    n_ctx: int
    where: str  # "CPU only", "all layers on the GPU", "20 GPU layers" ...
    predicted: dict[int, tuple[float, float]]

    def predicted_curve(self, which: str) -> list[tuple[int, float]]:
        i = 0 if which == "tg" else 1
        return [(d, v[i]) for d, v in sorted(self.predicted.items())]


def _gib(n: float) -> str:
    return f"{n / 1024**3:.2f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


def plan_sweep(
    model: str | Path,
    depths: Sequence[int],
    report: Any = None,
    gpu_offload: bool | None = None,
    n_gpu_layers: int | None = None,
    n_cpu_moe: int = 0,
    n_prompt: int = 512,
    n_gen: int = 128,
) -> SweepPlan:
    """Plan the file's own weights at the sweep's largest context on this machine (``report``:
    a HardwareReport, None for the CPU only), as the ``speed_sweep`` job will load it."""
    from qtapp.core.evaluate.memory import eval_offload, eval_repack, read_model_cached
    from qtapp.core.fit.devices import devices_from_report, host_device
    from qtapp.core.fit.host_memory import HostLoad
    from qtapp.core.fit.kv_model import ContextSettings
    from qtapp.core.fit.plan import PlanInputs, current_weights, plan_row

    m = read_model_cached(model)
    gpus = devices_from_report(report) if report is not None else []
    ngl = eval_offload({"n_gpu_layers": n_gpu_layers}, gpu_offload, len(gpus))
    n_ctx = sweep_context(depths, n_prompt, n_gen)
    cs = ContextSettings(n_ctx=n_ctx)
    used = gpus if ngl != 0 else []
    inp = PlanInputs(m, cs, used, host_device(report), load=HostLoad("mmap", eval_repack()))
    cur = m.memo.get("current")
    if cur is None:
        cur = m.memo["current"] = current_weights(m)
    row = plan_row(inp, cur, ngl=ngl if used and ngl > 0 else None)
    if n_cpu_moe and used:
        row.n_cpu_moe = max(row.n_cpu_moe, n_cpu_moe)
    where = "CPU only"
    if used:
        where = "all layers on the GPU" if ngl < 0 else f"{ngl} GPU layers"
        where += f", experts of {n_cpu_moe} blocks on the CPU" if n_cpu_moe else ""
    predicted: dict[int, tuple[float, float]] = {}
    for d in depths:
        at = row.predict_at
        predicted[int(d)] = at(int(d)) if at is not None else (0.0, 0.0)
    return SweepPlan(row, n_ctx, where, predicted)


def check_sweep(
    model: str | Path,
    depths: Sequence[int],
    reps: int = 5,
    threads: int | None = None,
    n_gpu_layers: int | None = None,
    n_cpu_moe: int = 0,
    report: Any = None,
    gpu_offload: bool | None = None,
    n_prompt: int = 512,
    n_gen: int = 128,
) -> SweepPlan:
    """Refuse, with one clear line, what would fail or mislead once started: bad counts, a
    depth beyond the model's trained context, a context the plan says does not fit."""
    from qtapp.core.evaluate.memory import read_model_cached

    if reps < 1:
        raise QuantLensError(f"--reps {reps} is out of range.", "Use 1 or more repetitions.")
    if threads is not None and threads < 0:
        raise QuantLensError(f"--threads {threads} is negative.", "Use 0 (all cores) or more.")
    if n_gpu_layers is not None and n_gpu_layers < -1:
        raise QuantLensError(
            f"--ngl {n_gpu_layers} is out of range.", "Use -1 (all layers) or 0 and up."
        )
    if n_cpu_moe < 0:
        raise QuantLensError(f"--n-cpu-moe {n_cpu_moe} is negative.", "Use 0 and up.")
    if not depths:
        raise QuantLensError("No depth given.", "Give depths like 0,1024,4096.")
    m = read_model_cached(model)
    if n_cpu_moe and not m.is_moe:
        raise QuantLensError(
            f"{Path(model).name} is not a mixture-of-experts model: --n-cpu-moe has no experts "
            "to keep on the CPU.",
            "Use --ngl to move whole layers instead.",
        )
    trained = int(m.n_ctx_train or 0)
    need = sweep_context(depths, n_prompt, n_gen)
    if trained and need > trained:
        deepest = max(0, trained - max(n_prompt, n_gen))
        raise QuantLensError(
            f"Depth {max(depths):,} is beyond {Path(model).name}'s trained context: with the "
            f"{max(n_prompt, n_gen)} tokens measured after it, the context would be {need:,} "
            f"tokens; the model was trained on {trained:,}.",
            f"Use depths up to {deepest:,}.",
        )
    sp = plan_sweep(model, depths, report, gpu_offload, n_gpu_layers, n_cpu_moe, n_prompt, n_gen)
    if sp.row.verdict == "no":
        short = [
            f"{u.device} needs {_gib(u.total_bytes)} of {_gib(u.budget_bytes)} free"
            for u in sp.row.devices
            if u.budget_bytes > 0 and u.total_bytes > u.budget_bytes
        ]
        raise QuantLensError(
            f"Depth {max(depths):,} does not fit: the plan for a {need:,}-token context "
            f"({sp.where}) says {'; '.join(short) or 'it does not fit'}.",
            "Use smaller depths, fewer GPU layers or a smaller quant (the Fit page shows the "
            "largest context that fits).",
        )
    return sp


def curve_errors(
    measured: Sequence[tuple[int, float]], predicted: dict[int, tuple[float, float]], which: str
) -> list[tuple[int, float, float, float]]:
    """(depth, measured, predicted, predicted / measured - 1) where both exist."""
    i = 0 if which == "tg" else 1
    out = []
    for d, v in measured:
        p = predicted.get(int(d))
        if p is None or not v or not math.isfinite(v) or p[i] <= 0:
            continue
        out.append((int(d), float(v), float(p[i]), p[i] / v - 1.0))
    return out


def error_text(errors: Sequence[tuple[int, float, float, float]]) -> str:
    """``"predicted 12% high at 0, 30% high at 4,096"`` (``×2.5 at 0`` from twice up)."""
    if not errors:
        return ""
    parts = []
    for d, _m, _p, e in errors:
        if e >= 1.0:  # two times or more: a factor reads better than a percentage
            parts.append(f"×{1 + e:.1f} at {d:,}")
        else:
            parts.append(f"{abs(e) * 100:.0f}% {'high' if e >= 0 else 'low'} at {d:,}")
    return "predicted " + ", ".join(parts)


def with_depths(sp: SweepPlan, depths: Sequence[int]) -> SweepPlan:
    """The same plan with predictions at more depths (cheap: no replanning)."""
    at = sp.row.predict_at
    extra = {int(d): at(int(d)) for d in depths if at is not None and int(d) not in sp.predicted}
    return replace(sp, predicted={**sp.predicted, **extra})


def parse_offload_values(text: str) -> list[int]:
    """``"0,8,16"`` -> ``[0, 8, 16]`` (GPU layers or expert layers on the CPU)."""
    values = parse_depths(text)  # the same rules: whole numbers >= 0, no repeats
    if not values:
        raise QuantLensError("No values given.", "Give layer counts like 0,8,16,24.")
    return values


def predict_offload(
    model: str | Path, values: Sequence[int], report: Any, depth: int = 0, axis: str = "ngl"
) -> dict[int, tuple[float, float]]:
    """Predicted (tg, pp) at ``depth`` for each GPU-layer count (``axis="ngl"``); empty for
    expert placement, which the planner chooses itself (no prediction is made up)."""
    from qtapp.core.evaluate.memory import eval_repack, read_model_cached
    from qtapp.core.fit.devices import devices_from_report, host_device
    from qtapp.core.fit.host_memory import HostLoad
    from qtapp.core.fit.kv_model import ContextSettings
    from qtapp.core.fit.plan import PlanInputs, current_weights, plan_row

    gpus = devices_from_report(report) if report is not None else []
    if axis != "ngl" or not gpus:
        return {}
    m = read_model_cached(model)
    cs = ContextSettings(n_ctx=sweep_context([depth]))
    inp = PlanInputs(m, cs, gpus, host_device(report), load=HostLoad("mmap", eval_repack()))
    cur = m.memo.get("current")
    if cur is None:
        cur = m.memo["current"] = current_weights(m)
    out: dict[int, tuple[float, float]] = {}
    for v in values:
        row = plan_row(inp, cur, ngl=max(int(v), 0))
        at = row.predict_at
        out[int(v)] = at(depth) if at is not None else (0.0, 0.0)
    return out
