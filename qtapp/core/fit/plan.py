"""Memory prediction and fit: weights + KV + compute + overhead per device, offload, recommendation.

Pure Python over a :class:`ModelInfo` and per-tensor sizes, so a plan of every quant type takes
milliseconds (the fit page recomputes it while a slider moves). Exact figures from llama.cpp (the
quantizer's dry run for weights, a no-alloc load for KV / compute) replace the estimates when the
caller passes them in (:class:`ExactFigures`).

Placement (which device holds what) lives in :mod:`qtapp.core.fit.placement`, per-tensor sizes in
:mod:`qtapp.core.fit.weights`; this module builds the rows and the recommendation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from qtapp.core.fit.devices import DEFAULT_MARGIN, GIB, MIB, Device, overhead_text
from qtapp.core.fit.host_memory import HostLoad
from qtapp.core.fit.kv_model import ContextSettings, kv_estimate, pad
from qtapp.core.fit.measured_speed import Calibration, MeasuredSpeeds, SpeedMeasurement
from qtapp.core.fit.placement import (
    DeviceUse,
    ExactFigures,
    Layered,
    Placement,
    device_uses,
    fill_gpus,
    gpus_fit,
    group_weights,
    layer_devices,
    llama_args,
    moe_upgrade,
    verdict_of,
)
from qtapp.core.fit.quality_order import QualityOrder, published_rank
from qtapp.core.fit.quants import QUALITY_ORDER, QUANT_TYPES, RECIPES, Recipe, quality_rank
from qtapp.core.fit.speed import predict_speed
from qtapp.core.fit.weights import (
    FLOAT_TYPES,
    Weights,
    current_weights,
    estimate_weights,
    quantizable,
)
from qtapp.core.gguf.model import ModelInfo

__all__ = [
    "DeviceUse",
    "ExactFigures",
    "Placement",
    "Plan",
    "PlanInputs",
    "PlanRow",
    "QualityOrder",
    "Weights",
    "current_weights",
    "estimate_weights",
    "layer_devices",
    "llama_args",
    "make_plan",
    "plan_row",
    "quantizable",
    "targets_for",
    "largest_context",
]

#: the lowest type recommended while any better one runs at all (fully or partially)
QUALITY_FLOOR = "Q2_K"


@dataclass
class PlanRow:
    type: str
    weights_bytes: int
    bpw: float
    n_gpu_layers: int
    n_cpu_moe: int
    verdict: str  # "fits" | "partial" | "no"
    devices: list[DeviceUse]
    predicted_tg_tps: float
    predicted_pp_tps: float
    weights_exact: bool = False
    memory_exact: bool = False
    needs_imatrix: bool = False
    special: str = ""
    note: str = ""
    tensor_split: list[float] | None = None
    llama_args: str = ""  # the llama.cpp flags that reproduce this placement
    user_recipe: bool = False
    measured_quality: float | None = None  # the user's mean KLD (or PPL), see Plan.quality
    speed_source: str = "predicted"  # "predicted" | "calibrated" | "measured"
    measured: SpeedMeasurement | None = None  # this type measured on this hardware/placement
    calibration: Calibration | None = None  # ratios from the measured types of this placement
    #: tokens already in the KV cache that the shown speeds are for: the chosen context
    depth: int = 0
    predicted_tg_depth_tps: float = 0.0  # predicted at ``depth`` (0: as predicted_tg_tps)
    predicted_pp_depth_tps: float = 0.0
    #: depth -> predicted (tg, pp) for this row's placement (what measured curves are scaled by)
    predict_at: Callable[[int], tuple[float, float]] | None = field(
        default=None, repr=False, compare=False
    )
    #: "tg" / "pp" -> the measurement at ``depth`` (interpolated on a measured curve, or the
    #: nearest measured depth scaled by the prediction), and how it was obtained
    measured_depth: dict[str, float] = field(default_factory=dict)
    measured_how: dict[str, str] = field(default_factory=dict)

    def predicted_at_depth(self, which: str) -> float:
        value: float = getattr(self, f"predicted_{which}_depth_tps")
        return value if value > 0 else float(getattr(self, f"predicted_{which}_tps"))

    def _speed(self, which: str) -> float:
        predicted = self.predicted_at_depth(which)
        value = self.measured_depth.get(which)
        if value is None and self.measured is not None:
            value = getattr(self.measured, f"{which}_tps")
        if value:
            return float(value)
        ratio = getattr(self.calibration, f"{which}_ratio") if self.calibration else None
        return predicted * ratio if ratio else predicted

    @property
    def tg_tps(self) -> float:
        """Generation tokens/s as shown: measured, else calibrated, else predicted."""
        return self._speed("tg")

    @property
    def pp_tps(self) -> float:
        """Prompt tokens/s as shown: measured, else calibrated, else predicted."""
        return self._speed("pp")

    def speed_source_of(self, which: str) -> str:
        """Where the shown tg or pp figure comes from (a run may have measured only one)."""
        if self.measured is not None and getattr(self.measured, f"{which}_tps"):
            return "measured"
        if self.calibration is not None and getattr(self.calibration, f"{which}_ratio"):
            return "calibrated"
        return "predicted"

    @property
    def host_bytes(self) -> int:
        return sum(d.total_bytes for d in self.devices if d.device == "CPU")

    @property
    def gpu_bytes(self) -> int:
        return sum(d.total_bytes for d in self.devices if d.device != "CPU")

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "weights_bytes": self.weights_bytes,
            "bpw": round(self.bpw, 3),
            "n_gpu_layers": self.n_gpu_layers,
            "n_cpu_moe": self.n_cpu_moe,
            "verdict": self.verdict,
            "predicted_tg_tps": round(self.predicted_tg_tps, 2),
            "predicted_pp_tps": round(self.predicted_pp_tps, 1),
            "depth": self.depth,
            "predicted_tg_depth_tps": round(self.predicted_at_depth("tg"), 2),
            "predicted_pp_depth_tps": round(self.predicted_at_depth("pp"), 1),
            "weights_exact": self.weights_exact,
            "memory_exact": self.memory_exact,
            "needs_imatrix": self.needs_imatrix,
            "note": self.note,
            "tensor_split": self.tensor_split,
            "llama_args": self.llama_args,
            "user_recipe": self.user_recipe,
            "measured_quality": self.measured_quality,
            "speed_source": self.speed_source,
            "tg_tps": round(self.tg_tps, 2),
            "pp_tps": round(self.pp_tps, 1),
            **self._speed_dict(),
            "devices": [d.to_dict() for d in self.devices],
        }

    def _speed_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        s = self.measured
        if s is not None:
            out.update(
                measured_tg_tps=s.tg_tps,
                measured_tg_sd=s.tg_sd,
                measured_pp_tps=s.pp_tps,
                measured_pp_sd=s.pp_sd,
                measured_run_id=s.run_id,
                measured_at=s.date,
            )
        for which, value in self.measured_depth.items():
            out[f"measured_{which}_depth_tps"] = round(value, 2 if which == "tg" else 1)
            out[f"measured_{which}_how"] = self.measured_how.get(which, "")
        c = self.calibration
        for which in ("tg", "pp"):
            if c is not None and self.speed_source_of(which) == "calibrated":
                value = self.tg_tps if which == "tg" else self.pp_tps
                out[f"calibrated_{which}_tps"] = round(value, 2 if which == "tg" else 1)
                out["calibration_n"] = c.n
        return out


@dataclass
class Plan:
    model: ModelInfo
    settings: ContextSettings
    devices: list[Device]
    margin: int
    rows: list[PlanRow]
    recommended: str | None
    recommended_ctx: int | None
    why: str
    quality: QualityOrder = field(default_factory=QualityOrder)
    #: placement ("cpu" | "gpu" | "ngl<N>") -> median measured/predicted ratios and their count
    speed_calibration: dict[str, Any] = field(default_factory=dict)
    load: HostLoad = field(default_factory=HostLoad)

    def row(self, name: str) -> PlanRow | None:
        return next((r for r in self.rows if r.type == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.summary(),
            "hardware": {
                "devices": [
                    {
                        "device": d.name,
                        "label": d.label,
                        "total_bytes": d.total_bytes,
                        "free_bytes": d.free_bytes,
                        "bandwidth_bytes_per_s": d.bandwidth,
                    }
                    for d in self.devices
                ],
                "margin_bytes": self.margin,
                # where the GPUs' CUDA overhead comes from: built in, or measured by your runs
                "cuda_overhead": (
                    overhead_text(self.devices) if any(d.is_gpu for d in self.devices) else None
                ),
            },
            "settings": self.settings.to_dict(),
            "recommended": self.recommended,
            "recommended_ctx": self.recommended_ctx,
            "why": self.why,
            "quality_order": self.quality.to_dict(),
            "speed_calibration": self.speed_calibration,
            "host_load": {
                "load_mode": self.load.mode,
                "copies_into": list(self.load.repack.kinds),
                "cpu_features": sorted(self.load.repack.features),
            },
            "rows": [r.to_dict() for r in self.rows],
        }


# -- weights -----------------------------------------------------------------------------------


@dataclass
class PlanInputs:
    model: ModelInfo
    settings: ContextSettings = field(default_factory=ContextSettings)
    gpus: list[Device] = field(default_factory=list)
    host: Device = field(default_factory=lambda: Device("CPU", 0, 0, 40e9, False))
    margin: int = DEFAULT_MARGIN
    ngl: int | None = None  # None: choose like llama.cpp's --fit
    tensor_split: list[float] | None = None
    weights: dict[str, Weights] = field(default_factory=dict)  # exact sizes by target
    exact: dict[ContextSettings, ExactFigures] = field(default_factory=dict)
    #: ranks the candidates; measured from the results store when the caller read it
    quality: QualityOrder = field(default_factory=QualityOrder)
    recipes: dict[str, Recipe] = field(default_factory=dict)  # the user's recipes by name
    #: the user's measured speeds (read once per model open): shown and used to calibrate
    speeds: MeasuredSpeeds = field(default_factory=MeasuredSpeeds)
    #: how llama.cpp loads the weights on this host (load mode, repacked copies)
    load: HostLoad = field(default_factory=HostLoad)

    def rank(self, name: str) -> float:
        """Higher is better: the measured order where there is one, else the published one."""
        if self.quality.is_measured(name):
            return self.quality.rank(name)
        return published_rank(name, self.recipes)


def plan_row(
    inp: PlanInputs, w: Weights, ngl: int | None = None, settings: ContextSettings | None = None
) -> PlanRow:
    m = inp.model
    cs = settings or inp.settings
    n_all = max(int(m._int("block_count")), m.n_layer)
    g = group_weights(m, w, n_all, inp.load.repack)
    exact = inp.exact.get(cs)
    kv_layer = _kv_per_layer(m, cs, exact, n_all)
    full = n_all + 1
    want = ngl if ngl is not None else inp.ngl
    pl = _placement(inp, g, kv_layer, cs, exact, want, n_all)
    uses = device_uses(m, g, kv_layer, cs, inp.gpus, inp.host, pl, inp.margin, exact, inp.load)
    ngl_used, n_cpu_moe = pl.n_gpu_layers, pl.n_cpu_moe
    all_on_gpu = bool(inp.gpus) and ngl_used >= full and n_cpu_moe == 0
    verdict = verdict_of(uses, all_on_gpu or not inp.gpus)
    predict_at = partial(
        predict_speed, m, uses, inp.gpus, inp.host, cs, g.has_float_matrices, min(ngl_used, n_all)
    )
    tg, pp = predict_at()
    tg_d, pp_d = predict_at(depth=cs.n_ctx)
    qt = QUANT_TYPES.get(w.target)
    bpw = 8.0 * w.total / max(m.n_params, 1)
    row = PlanRow(
        w.target,
        w.total,
        bpw,
        ngl_used,
        n_cpu_moe,
        verdict,
        uses,
        tg,
        pp,
        weights_exact=w.exact,
        memory_exact=exact is not None,
        needs_imatrix=w.needs_imatrix or bool(qt and qt.needs_imatrix),
        special=qt.special if qt else "",
        note=_offload_note(bool(inp.gpus), ngl_used, n_cpu_moe, n_all),
        user_recipe=w.target in inp.recipes,
    )
    measured = inp.quality.measured.get(w.target)
    row.measured_quality = measured.value if measured is not None else None
    row.depth, row.predicted_tg_depth_tps, row.predicted_pp_depth_tps = cs.n_ctx, tg_d, pp_d
    row.predict_at = lambda depth: predict_at(depth=depth)
    row.tensor_split = pl.tensor_split
    row.llama_args = " ".join(
        a for a in (llama_args(pl, bool(inp.gpus), len(inp.gpus)), inp.load.flag()) if a
    )
    return row


def _kv_per_layer(
    m: ModelInfo, cs: ContextSettings, exact: ExactFigures | None, n_all: int
) -> list[int]:
    """The KV cache bytes of each block, scaled to llama.cpp's own total when it was measured.

    The same for every row of a plan: memoized on the model per settings (a plan has ~40 rows
    and the window replans on every slider step)."""
    measured = None if exact is None else (exact.kv_bytes, exact.recurrent_bytes)
    key = ("kv_layer", cs, measured, n_all)
    hit: list[int] | None = m.memo.get(key)
    if hit is not None:
        return list(hit)
    kv = kv_estimate(m, cs)
    kv_layer = list(kv.per_layer) + [0] * (n_all - len(kv.per_layer))
    if exact is not None and kv.total:
        # llama.cpp's own totals (identical to the analytic ones up to its log's rounding)
        ratio = (exact.kv_bytes + exact.recurrent_bytes) / kv.total
        kv_layer = [int(b * ratio) for b in kv_layer]
    if sum(1 for k in m.memo if isinstance(k, tuple) and k[:1] == ("kv_layer",)) > 256:
        for k in [k for k in m.memo if isinstance(k, tuple) and k[:1] == ("kv_layer",)]:
            del m.memo[k]  # a long session of slider moves: start the memo again
    m.memo[key] = list(kv_layer)
    return kv_layer


def _placement(
    inp: PlanInputs,
    g: Layered,
    kv_layer: list[int],
    cs: ContextSettings,
    exact: ExactFigures | None,
    want: int | None,
    n_all: int,
) -> Placement:
    """Where the layers go: all on the CPU without GPUs, as asked (``want`` layers, the
    tensor split), else like llama.cpp's ``--fit`` (MoE experts back on the CPU first)."""
    m = inp.model
    full = n_all + 1
    no_experts_cpu = [False] * n_all

    def uses_of(pl: Placement) -> list[DeviceUse]:
        return device_uses(m, g, kv_layer, cs, inp.gpus, inp.host, pl, inp.margin, exact, inp.load)

    if not inp.gpus:
        return Placement([-1] * full, no_experts_cpu)
    if want is not None or inp.tensor_split:
        n = full if want is None or want < 0 else min(want, full)
        return Placement(
            layer_devices(n_all, n, inp.gpus, inp.tensor_split), no_experts_cpu, inp.tensor_split
        )
    # llama.cpp's default (all layers, split by free memory) unless it does not fit
    pl = Placement(layer_devices(n_all, full, inp.gpus), no_experts_cpu)
    if not gpus_fit(uses_of(pl)):
        pl = fill_gpus(m, g, kv_layer, cs, inp.gpus, inp.margin, exact, with_experts=True)
        if m.is_moe and pl.n_gpu_layers < full:
            # every block's dense part on the GPUs (split as llama.cpp splits layers), the
            # routed experts on the CPU, then experts back onto each GPU while they fit
            dense = Placement(layer_devices(n_all, full, inp.gpus), [True] * n_all)
            if not gpus_fit(uses_of(dense)):
                dense = fill_gpus(
                    m, g, kv_layer, cs, inp.gpus, inp.margin, exact, with_experts=False
                )
            if dense.n_gpu_layers == full:
                pl = moe_upgrade(g, dense, uses_of(dense))
            elif dense.n_gpu_layers > pl.n_gpu_layers:
                pl = dense
    return pl


def _offload_note(has_gpus: bool, ngl_used: int, n_cpu_moe: int, n_all: int) -> str:
    """What a partial offload leaves on the CPU (empty when everything is on the GPUs)."""
    full = n_all + 1
    note = ""
    if has_gpus and ngl_used >= full and n_cpu_moe:
        note = f"experts of {n_cpu_moe} of {n_all} layers on the CPU"
    elif has_gpus and ngl_used < full:
        note = f"{min(ngl_used, n_all)} of {n_all} layers on the GPUs"
        if n_cpu_moe and ngl_used:
            note += f", experts of {n_cpu_moe} on the CPU"
    return note


def targets_for(
    m: ModelInfo,
    recipes: dict[str, Recipe] | None = None,
    quality: QualityOrder | None = None,
) -> list[str]:
    """Every quant type, built-in recipe and user recipe, best first (by ``quality``, else
    llama.cpp's published order); types that only suit other models are left out."""
    names = [
        n
        for n in QUANT_TYPES
        if not QUANT_TYPES[n].special or (QUANT_TYPES[n].family == "mxfp4" and m.is_moe)
    ]
    names += list(RECIPES)
    names += [n for n in recipes or {} if n not in names]
    order = quality or QualityOrder()

    def rank(n: str) -> float:
        return order.rank(n) if order.is_measured(n) else published_rank(n, recipes)

    return sorted(names, key=lambda n: -rank(n))


def _weights_for(inp: PlanInputs, target: str) -> Weights:
    w = inp.weights.get(target)
    if w is not None and w.exact and len(w.tensors) < len(inp.model.tensors):
        # llama.cpp sized only part of the tensors (e.g. a type the gguf package does not know):
        # fill the gaps with estimates and do not claim exactness
        est = estimate_weights(inp.model, target, inp.recipes)
        w = Weights(
            target,
            {**est.tensors, **w.tensors},
            exact=False,
            needs_imatrix=w.needs_imatrix or est.needs_imatrix,
        )
    if w is None:
        recipe = inp.recipes.get(target)
        # a user recipe can be edited between plans: its rules are part of the key
        key = ("estimate", target, repr((recipe.base, recipe.rules)) if recipe is not None else "")
        w = inp.model.memo.get(key)
        if w is None:
            w = inp.model.memo[key] = estimate_weights(inp.model, target, inp.recipes)
    return w


def _candidate(inp: PlanInputs, row: PlanRow) -> bool:
    if row.type == "current" or row.needs_imatrix or row.special:
        return False
    if row.type in ("F32",):
        return False
    # re-quantizing to a better type than the file's own gains no quality
    source = inp.model.file_type
    if source in QUALITY_ORDER and source not in FLOAT_TYPES:
        return published_rank(row.type, inp.recipes) <= quality_rank(source)
    return row.weights_bytes <= inp.model.weights_bytes * 1.02


def largest_context(inp: PlanInputs, target: str, verdict: str = "fits") -> int | None:
    """The largest context (multiple of 256, up to the trained one) keeping ``verdict``."""
    m = inp.model
    w = _weights_for(inp, target)
    top = max(m.n_ctx_train or 0, inp.settings.n_ctx)

    def ok(n: int) -> bool:
        r = plan_row(
            inp,
            w,
            ngl=(inp.ngl if inp.ngl is not None else None),
            settings=replace(inp.settings, n_ctx=n),
        )
        return r.verdict == verdict

    if not ok(256):
        return None
    lo, hi = 1, pad(top, 256) // 256
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid * 256):
            lo = mid
        else:
            hi = mid - 1
    return lo * 256


def _gib(b: int) -> str:
    return f"{b / GIB:.1f} GiB" if b >= GIB else f"{b / MIB:.0f} MiB"


def _recommend(inp: PlanInputs, rows: list[PlanRow]) -> tuple[str | None, int | None, str]:
    cands = sorted((r for r in rows if _candidate(inp, r)), key=lambda r: -inp.rank(r.type))
    floor = quality_rank(QUALITY_FLOOR)
    # below the floor only as a last resort: a partial plan of Q2_K beats a full one of Q1_0
    tiers = [
        [r for r in cands if inp.rank(r.type) >= floor],
        [r for r in cands if inp.rank(r.type) < floor],
    ]
    budget = sum(u.budget_bytes for u in rows[0].devices if u.device != "CPU")
    if not inp.gpus:
        return _recommend_on_cpu(inp, cands, tiers)
    for tier in tiers:
        fits = [r for r in tier if r.verdict == "fits"]
        if fits:
            return _recommend_fitting(inp, rows, cands, fits[0], budget)
        partial = [r for r in tier if r.verdict == "partial"]
        if partial:
            return _recommend_partial(inp, cands, partial)
    return None, None, "Nothing fits, even with partial offload, at this context and hardware."


def _recommend_on_cpu(
    inp: PlanInputs, cands: list[PlanRow], tiers: list[list[PlanRow]]
) -> tuple[str | None, int | None, str]:
    """Without GPUs: the best candidate that fits in the host's memory."""
    best = next((r for tier in tiers for r in tier if r.verdict != "no"), None)
    if best is None:
        return None, None, "Nothing fits in the host's memory at this context."
    used = _measurement_used(inp, cands, best)
    return (
        best.type,
        largest_context(inp, best.type),
        (
            f"{_named(inp, best.type, used)}: {_gib(best.host_bytes)} of RAM on the CPU, "
            "about "
            f"{_speed_phrase(best)} (no GPU in this plan)"
            f"{_measured_clause(inp, [best.type], used)}."
        ),
    )


def _recommend_fitting(
    inp: PlanInputs, rows: list[PlanRow], cands: list[PlanRow], best: PlanRow, budget: int
) -> tuple[str | None, int | None, str]:
    """``best`` fits on the GPUs: say so, and what the next better type would need."""
    ctx = largest_context(inp, best.type)
    above = [r for r in cands if inp.rank(r.type) > inp.rank(best.type)]
    better = above[-1] if above else None
    used = _measurement_used(inp, cands, best, better)
    plural = "s" if len(inp.gpus) > 1 else ""
    why = (
        f"{_named(inp, best.type, used)}: {_gib(best.gpu_bytes)} of {_gib(budget)} usable "
        f"on the GPU{plural}"
    )
    if better is not None:
        why += f"; {_named(inp, better.type, used)} needs {_gib(_need(better))}"
    elif _upcast_blocked(inp, rows, best):
        why += f"; the file is {inp.model.file_type}, so larger types add no quality"
    if ctx:
        why += f"; it still fits at up to {ctx:,} tokens of context"
    shown = [best.type] + ([better.type] if better is not None else [])
    return best.type, ctx, why + _measured_clause(inp, shown, used) + "."


def _recommend_partial(
    inp: PlanInputs, cands: list[PlanRow], partial: list[PlanRow]
) -> tuple[str | None, int | None, str]:
    """Nothing fits fully: the best type within half of the fastest partial plan's speed."""
    fastest = max(r.predicted_tg_tps for r in partial)
    best = next(r for r in partial if r.predicted_tg_tps >= 0.5 * fastest)
    used = _measurement_used(inp, cands, best)
    roomy = replace(inp, gpus=[replace(d, free_bytes=1 << 60) for d in inp.gpus])
    full_speed = plan_row(roomy, _weights_for(inp, best.type)).predicted_tg_tps
    return (
        best.type,
        None,
        (
            "Nothing fits fully on the GPUs; best partial plan: "
            f"{_named(inp, best.type, used)} with "
            f"{best.note or 'partial offload'}, {_gib(best.host_bytes)} of host RAM, about "
            f"{_speed_phrase(best)} (about {full_speed:.0f} predicted with "
            f"enough VRAM){_measured_clause(inp, [best.type], used)}."
        ),
    )


def _speed_phrase(row: PlanRow) -> str:
    """The tg speed in words: ``"12.3 tokens/s predicted"``, ``"... measured"`` or
    ``"... calibrated from 2 measurements"``."""
    source = row.speed_source_of("tg")
    if source == "calibrated" and row.calibration is not None:
        n = row.calibration.n
        source = f"calibrated from {n} measurement{'s' if n != 1 else ''}"
    return f"{row.tg_tps:.1f} tokens/s {source}"


def _measurement_used(
    inp: PlanInputs, cands: list[PlanRow], best: PlanRow, better: PlanRow | None = None
) -> bool:
    """Whether a measurement decided the choice: a measured type that the published order puts
    above ``best`` was ranked below it, or ``best`` and the next better type were compared by
    measurement."""
    q = inp.quality
    if not q.is_measured(best.type):
        return False
    if better is not None and q.is_measured(better.type):
        return True
    mine = published_rank(best.type, inp.recipes)
    return any(
        q.is_measured(r.type)
        and published_rank(r.type, inp.recipes) > mine
        and inp.rank(r.type) < inp.rank(best.type)
        for r in cands
    )


def _named(inp: PlanInputs, name: str, used: bool) -> str:
    return f"{name} (measured)" if used and inp.quality.is_measured(name) else name


def _measured_clause(inp: PlanInputs, names: list[str], used: bool) -> str:
    """``"; ranked by your measurements: mean KLD Q4_K_M 0.021 < Q5_K_M 0.034"``, or ""."""
    if not used:
        return ""
    q = inp.quality
    others = sorted((t for t in q.measured if t not in names), key=lambda t: q.measured[t].value)
    shown = ([n for n in names if q.is_measured(n)] + others)[:4]
    return f"; ranked by your measurements: {q.describe(shown)}"


def _upcast_blocked(inp: PlanInputs, rows: list[PlanRow], best: PlanRow) -> bool:
    return any(
        r.verdict == "fits"
        and r.type != "current"
        and not _candidate(inp, r)
        and not r.needs_imatrix
        and not r.special
        and inp.rank(r.type) > inp.rank(best.type)
        for r in rows
    )


def _need(row: PlanRow) -> int:
    """What a row needs on the GPUs if everything were there (its GPU plus CPU weights/KV)."""
    return row.gpu_bytes + sum(
        d.weights_bytes + d.kv_bytes for d in row.devices if d.device == "CPU"
    )


def make_plan(inp: PlanInputs, targets: list[str] | None = None) -> Plan:
    m = inp.model
    names = targets or targets_for(m, inp.recipes, inp.quality)
    cur = m.memo.get("current")
    if cur is None:
        cur = m.memo["current"] = current_weights(m)
    rows = [plan_row(inp, cur)]
    rows[0].type = "current"
    rows += [plan_row(inp, _weights_for(inp, t)) for t in names]
    n_layer = max(int(m._int("block_count")), m.n_layer)
    calibration = inp.speeds.apply(rows, inp.gpus, n_layer, m.file_type or "")
    recommended, ctx, why = _recommend(inp, rows)
    return Plan(
        m,
        inp.settings,
        [*inp.gpus, inp.host],
        inp.margin,
        rows,
        recommended,
        ctx,
        why,
        inp.quality,
        calibration,
        inp.load,
    )
