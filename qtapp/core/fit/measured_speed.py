"""Measured speeds replace predictions, and calibrate the predictions of the unmeasured types.

:mod:`qtapp.core.fit.speed` predicts tokens/s from bandwidth and compute; on CPUs it is easily 2x
off. When the results store holds speed measurements (eval runs with ``pp_tps`` / ``tg_tps``) of
quants of the opened model, taken on this hardware, the plan shows them for those rows, and scales
the predictions of the other rows on the same device placement by the median measured/predicted
ratio (tg and pp separately).

Speeds are shown at the plan's context (its ``depth``: tokens in the KV cache). A measured curve
(a speed sweep across depths) gives the value at that depth directly, interpolated between two
measured depths; a measurement at other depths only (a plain pp512/tg128 run is depth 0) is
scaled to it by the predicted cost of depth. An offload sweep stores one measurement per GPU
layer count, each matched to the rows with that placement.

"Same hardware" compares what :func:`hardware_record` stored with the run (CPU model, usable
cores, GPU names) and the thread count; "same placement" compares where the layers ran
(``cpu``: none on a GPU, ``gpu``: all, ``ngl<N>``: a partial offload) with the row's plan.

:func:`measured_speeds` reads the store once (when a model is opened); :meth:`MeasuredSpeeds.apply`
runs per plan and costs microseconds.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from qtapp.core.fit.quality_order import _finite, _run_type, _same_model, stored_eval_runs
from qtapp.core.fit.quants import Recipe
from qtapp.core.fit.speed_curve import CurvePoint, SpeedCurve

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """The default thread count of the app's llama.cpp sessions (the CPU affinity set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def hardware_record(report: Any = None) -> dict[str, Any]:
    """What an eval run stores as its hardware: CPU model, usable cores and GPU names (in NVML
    order). ``report``: a HardwareReport; probed here (guarded) when None."""
    cpu_model = None
    try:
        from qtapp.core.hardware.host import read_host_info

        cpu_model = read_host_info().cpu_model
    except Exception as exc:  # noqa: BLE001 - unknown CPU: the run matches on GPUs and cores only
        log.debug("no host info: %s", exc)
    if report is None:
        try:
            from qtapp.core.hardware.probe import probe_hardware

            report = probe_hardware()
        except Exception as exc:  # noqa: BLE001 - no NVML: no GPUs
            log.debug("no hardware probe: %s", exc)
    gpus = [str(getattr(g, "name", None) or "GPU") for g in getattr(report, "gpus", ()) or ()]
    record = {"cpu_model": cpu_model, "usable_cores": usable_cores(), "gpus": gpus}
    if gpus and getattr(report, "driver_version", None):  # the CUDA overhead is per driver
        record["gpu_driver"] = str(report.driver_version)
    return record


def gpu_names(devices: Iterable[Any]) -> tuple[str, ...]:
    """The GPU names of a plan's devices (``"GPU 0: NVIDIA H200"`` -> ``"NVIDIA H200"``); a
    what-if GPU gets a name no measurement has."""
    out = []
    for d in devices:
        if not getattr(d, "is_gpu", True):
            continue
        label = str(getattr(d, "label", "") or "")
        if label.startswith("GPU ") and ": " in label:
            out.append(label.split(": ", 1)[1])
        else:
            out.append(f"?{label or d.name}")
    return tuple(out)


def row_placement(row: Any, n_gpus: int, n_layer: int) -> str:
    """``cpu`` | ``gpu`` | ``ngl<N>`` (``+moe<M>`` when expert tensors stay on the CPU)."""
    ngl = int(row.n_gpu_layers)
    if n_gpus == 0 or ngl == 0:
        return "cpu"
    moe = int(getattr(row, "n_cpu_moe", 0) or 0)
    base = "gpu" if ngl >= n_layer + 1 else f"ngl{ngl}"
    return base + (f"+moe{moe}" if moe else "")


def run_placement(ngl: int | None, n_gpus: int, n_layer: int, n_cpu_moe: int = 0) -> str:
    if n_gpus == 0 or ngl == 0:
        return "cpu"
    moe = f"+moe{n_cpu_moe}" if n_cpu_moe else ""
    if ngl is None or ngl < 0 or ngl >= n_layer + 1:
        return "gpu" + moe
    return f"ngl{ngl}" + moe


@dataclass(frozen=True)
class SpeedMeasurement:
    type: str
    run_id: int
    created: float  # seconds since the epoch
    placement: str
    gpus: tuple[str, ...]
    cpu_model: str | None
    usable_cores: int | None
    threads: int | None
    pp_tps: float | None
    pp_sd: float | None
    tg_tps: float | None
    tg_sd: float | None
    #: tokens/s against depth; a plain pp512/tg128 run is one point at depth 0
    curve: SpeedCurve = SpeedCurve()

    @property
    def date(self) -> str:
        return time.strftime("%Y-%m-%d", time.localtime(self.created))

    def _curve(self) -> SpeedCurve:
        if self.curve:
            return self.curve
        return SpeedCurve((CurvePoint(0, self.pp_tps, self.pp_sd, self.tg_tps, self.tg_sd),))

    def at_depth(
        self, which: str, depth: int, predict_at: PredictAt | None = None
    ) -> tuple[float, str] | None:
        """The measured ``which`` ("tg" | "pp") at ``depth`` and how it was obtained: on the
        measured curve, or the nearest measured depth scaled by the predicted cost of depth."""
        curve = self._curve()
        value = curve.at(which, depth)
        if value is not None:
            pts = [x for x, _v, _s in curve.measured(which)]
            if depth in pts:
                return value, f"measured at depth {depth:,}"
            below = max(x for x in pts if x < depth)
            above = min(x for x in pts if x > depth)
            return value, f"interpolated between measured depths {below:,} and {above:,}"
        near = curve.nearest(which, depth)
        if near is None:
            return None
        d, v = near
        scale = _depth_scale(which, depth, d, predict_at)
        if scale == 1.0:
            return v, f"measured at depth {d:,}"
        return v * scale, (
            f"measured at depth {d:,}, scaled to depth {depth:,} by the predicted cost of "
            f"depth (×{scale:.3f})"
        )

    def anchor(self, which: str) -> tuple[int, float] | None:
        """The shallowest measured point (what calibrates the predictions of other types)."""
        pts = self._curve().measured(which)
        return (pts[0][0], pts[0][1]) if pts else None


PredictAt = Callable[[int], tuple[float, float]]


def _depth_scale(which: str, to: int, frm: int, predict_at: PredictAt | None) -> float:
    if predict_at is None or to == frm:
        return 1.0
    i = 0 if which == "tg" else 1
    a, b = predict_at(to)[i], predict_at(frm)[i]
    return a / b if a > 0 and b > 0 else 1.0


@dataclass(frozen=True)
class Calibration:
    """Median measured/predicted ratios of one placement (None: nothing measured for it)."""

    tg_ratio: float | None
    pp_ratio: float | None
    n: int  # measured types used

    def to_dict(self) -> dict[str, Any]:
        r = {"tg_ratio": self.tg_ratio, "pp_ratio": self.pp_ratio, "n": self.n}
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}


@dataclass
class MeasuredSpeeds:
    """The speed measurements of one model, with the machine they are compared against."""

    measurements: list[SpeedMeasurement] = field(default_factory=list)
    cpu_model: str | None = None  # this machine's
    cores: int | None = None
    threads: int | None = None  # the thread count a plan assumes (the app's default)

    def __bool__(self) -> bool:
        return bool(self.measurements)

    def _here(self, s: SpeedMeasurement, gpus: tuple[str, ...]) -> bool:
        if s.cpu_model and self.cpu_model and s.cpu_model != self.cpu_model:
            return False
        if s.usable_cores and self.cores and s.usable_cores != self.cores:
            return False
        if s.placement == "cpu":  # GPUs do not matter, threads do
            return not (s.threads and self.threads and s.threads != self.threads)
        return s.gpus == gpus

    def usable(self, devices: Sequence[Any]) -> dict[tuple[str, str], SpeedMeasurement]:
        """(type, placement) -> the newest measurement taken on this hardware."""
        gpus = gpu_names(devices)
        out: dict[tuple[str, str], SpeedMeasurement] = {}
        for s in self.measurements:
            if not self._here(s, gpus):
                continue
            key = (s.type, s.placement)
            old = out.get(key)
            if old is None or (s.created, s.run_id) >= (old.created, old.run_id):
                out[key] = s
        return out

    def apply(
        self, rows: Sequence[Any], devices: Sequence[Any], n_layer: int, current_type: str = ""
    ) -> dict[str, Any]:
        """Fill the rows' measured / calibrated speeds (the ``current`` row is the file's own
        type, ``current_type``); returns the calibration per placement."""
        if not self.measurements:
            return {}
        found = self.usable(devices)
        if not found:
            return {}
        n_gpus = len(gpu_names(devices))
        places = [row_placement(r, n_gpus, n_layer) for r in rows]
        ratios: dict[str, dict[str, dict[str, float]]] = {}  # placement -> metric -> type -> r
        for row, place in zip(rows, places, strict=True):
            s = found.get((current_type if row.type == "current" else row.type, place))
            if s is None:
                continue
            row.measured = s
            row.speed_source = "measured"
            per = ratios.setdefault(place, {"tg": {}, "pp": {}})
            predict_at = getattr(row, "predict_at", None)
            for which in ("tg", "pp"):
                shown = s.at_depth(which, int(getattr(row, "depth", 0) or 0), predict_at)
                if shown is not None and hasattr(row, "measured_depth"):
                    row.measured_depth[which], row.measured_how[which] = shown
                ratio = _ratio(row, which, s.anchor(which), predict_at)
                if ratio is not None:
                    per[which][s.type] = ratio
        calib: dict[str, Calibration] = {}
        for place, per in ratios.items():
            tg, pp = per["tg"], per["pp"]
            calib[place] = Calibration(
                statistics.median(tg.values()) if tg else None,
                statistics.median(pp.values()) if pp else None,
                len(set(tg) | set(pp)),
            )
        for row, place in zip(rows, places, strict=True):
            c = calib.get(place)
            if c is None or c.n == 0:
                continue
            row.calibration = c
            if row.speed_source != "measured":
                row.speed_source = "calibrated"
        return {p: c.to_dict() for p, c in calib.items()}


def _ratio(
    row: Any, which: str, anchor: tuple[int, float] | None, predict_at: PredictAt | None
) -> float | None:
    """Measured / predicted at the measurement's shallowest depth."""
    if anchor is None:
        return None
    depth, value = anchor
    if depth == 0 or predict_at is None:
        predicted = float(getattr(row, f"predicted_{which}_tps"))
    else:
        predicted = predict_at(depth)[0 if which == "tg" else 1]
    return value / predicted if predicted > 0 else None


def _num(*values: Any) -> float | None:
    for v in values:
        f = _finite(v)
        if f is not None:
            return f
    return None


def _int(*values: Any) -> int | None:
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
            return int(v)
    return None


def speeds_from_runs(
    runs: Iterable[Any], model: Any, recipes: Mapping[str, Recipe] | None = None
) -> MeasuredSpeeds:
    """Every usable speed measurement of ``model``'s quants (any iterable of ``RunRecord``):
    pp/tg runs, depth sweeps (``speed_curve``), offload sweeps (one per GPU-layer count)."""
    recipes = dict(recipes or {})
    n_layer = int(getattr(model, "n_layer", 0) or 0)
    out: list[SpeedMeasurement] = []
    for run in runs:
        if run.kind != "eval" or run.state not in ("finished", "partial"):
            continue
        m = run.metrics if isinstance(run.metrics, dict) else {}
        tg, pp = _num(m.get("tg_tps")), _num(m.get("pp_tps"))
        curve = SpeedCurve.from_json(m.get("speed_curve"))
        offload = SpeedCurve.from_json(m.get("offload_curve"))
        if not tg and not pp and not curve and not offload:
            continue
        if not _same_model(run, model, recipes):
            continue
        t = _run_type(run, recipes)
        if t is None:
            continue
        hw, settings = _dict(run.hardware), _dict(run.settings)
        gpus = tuple(str(g) for g in hw.get("gpus") or ())
        ngl = _int(m.get("n_gpu_layers"), settings.get("n_gpu_layers"))  # -1: all layers
        moe = _int(m.get("n_cpu_moe"), settings.get("n_cpu_moe")) or 0
        threads = _num(m.get("threads"), settings.get("threads"))
        cores = _num(hw.get("usable_cores"))
        common = SpeedMeasurement(
            type=t,
            run_id=int(run.id),
            created=float(run.finished or run.created or 0.0),
            placement="",
            gpus=gpus,
            cpu_model=hw.get("cpu_model") or None,
            usable_cores=None if cores is None else int(cores),
            threads=None if threads is None else int(threads),
            pp_tps=None,
            pp_sd=None,
            tg_tps=None,
            tg_sd=None,
        )
        if tg or pp or curve:
            if curve and not (tg or pp):  # a sweep without depth 0: its shallowest point
                first = curve.points[0]
                pp, tg = first.value("pp"), first.value("tg")
            out.append(
                replace(
                    common,
                    placement=run_placement(ngl, len(gpus), n_layer, moe),
                    pp_tps=pp or None,
                    pp_sd=_num(m.get("pp_tps_sd")),
                    tg_tps=tg or None,
                    tg_sd=_num(m.get("tg_tps_sd")),
                    curve=curve,
                )
            )
        out += _offload_measurements(common, m, offload, len(gpus), n_layer)
    return MeasuredSpeeds(out, *_this_machine())


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _offload_measurements(
    common: SpeedMeasurement, m: Mapping[str, Any], offload: SpeedCurve, n_gpus: int, n_layer: int
) -> list[SpeedMeasurement]:
    """One measurement per point of an offload sweep, each with its own placement."""
    axis = m.get("offload_axis", "ngl")
    depth = _int(m.get("offload_depth")) or 0
    out = []
    for p in offload.points:
        place = (
            run_placement(p.x, n_gpus, n_layer)
            if axis == "ngl"
            else run_placement(-1, n_gpus, n_layer, p.x)
        )
        out.append(
            replace(
                common,
                placement=place,
                pp_tps=p.value("pp"),
                pp_sd=p.sd("pp"),
                tg_tps=p.value("tg"),
                tg_sd=p.sd("tg"),
                curve=SpeedCurve((CurvePoint(depth, p.pp, p.pp_sd, p.tg, p.tg_sd),)),
            )
        )
    return out


def _this_machine() -> tuple[str | None, int, int]:
    cpu_model = None
    try:
        from qtapp.core.hardware.host import read_host_info

        cpu_model = read_host_info().cpu_model
    except Exception as exc:  # noqa: BLE001
        log.debug("no host info: %s", exc)
    n = usable_cores()
    return cpu_model, n, n


def measured_speeds(model: Any, recipes: Mapping[str, Recipe] | None = None) -> MeasuredSpeeds:
    """Read the results store once; no measurements when it is missing or unreadable."""
    runs = stored_eval_runs("measured speeds")
    if runs is None:
        return MeasuredSpeeds()
    return speeds_from_runs(runs, model, recipes)


# -- presentation (Qt-free: the fit table and the CLI share it) --------------------------------


def tps_text(v: float) -> str:
    if v >= 10_000:
        return f"{v / 1000:,.0f}k"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def speed_text(row: Any, which: str) -> str:
    """The shown figure: ``"47.1"`` measured, ``"~47.1"`` calibrated, ``"102*"`` predicted."""
    source = row.speed_source_of(which)
    text = tps_text(row.tg_tps if which == "tg" else row.pp_tps)
    return {"measured": text, "calibrated": "~" + text}.get(source, text + "*")


def speed_tooltip(row: Any, which: str) -> str:
    """``which``: "tg" | "pp". Says where the figure comes from, at which depth."""
    depth = int(getattr(row, "depth", 0) or 0)
    test = {"tg": "Generation (tg128", "pp": "Prompt processing (pp512"}[which]
    name = f"{test} @ depth {depth:,})" if depth else f"{test})"
    pred = (
        row.predicted_at_depth(which)
        if hasattr(row, "predicted_at_depth")
        else getattr(row, f"predicted_{which}_tps")
    )
    s = row.measured
    shown = getattr(row, "measured_depth", {}).get(which)
    if s is not None and shown:
        how = row.measured_how.get(which, "measured")
        err = f" ({100 * (pred / shown - 1):+.0f}% off)" if shown > 0 else ""
        near = s._curve().nearest(which, depth)
        seen = ""
        if near is not None:
            sd = next((p.sd(which) for p in s._curve().points if p.x == near[0]), None)
            spread = f" ± {sd:.1f}" if sd is not None else ""
            seen = f"; measured on {s.date}: {near[1]:.1f}{spread} tokens/s at depth {near[0]:,}"
        return (
            f"{name}: {shown:.1f} tokens/s, {how}{seen} (eval run {s.run_id}); "
            f"predicted {pred:.1f}{err}."
        )
    value = getattr(s, f"{which}_tps") if s is not None else None
    if value:
        sd = getattr(s, f"{which}_sd")
        spread = f" ± {sd:.1f}" if sd is not None else ""
        return (
            f"{name}: measured on {s.date}: {value:.1f}{spread} tokens/s "
            f"(eval run {s.run_id}); predicted {pred:.1f}."
        )
    c = row.calibration
    ratio = getattr(c, f"{which}_ratio") if c is not None else None
    if ratio:
        shown = getattr(row, f"{which}_tps")
        plural = "s" if c.n != 1 else ""
        return (
            f"{name}: {shown:.1f} tokens/s, calibrated from {c.n} measurement{plural} on this "
            f"hardware (predicted {pred:.1f} × median measured/predicted {ratio:.2f})."
        )
    return (
        f"{name}: predicted {pred:.1f} tokens/s (memory bandwidth / compute model, with the "
        "KV cache read at this depth)."
    )


def speed_caption(plan: Any) -> str:
    """How the tokens/s columns were obtained, e.g. "Speeds: 1 type measured on this hardware;
    ~ calibrated from 1 measurement on the CPU (tg ×0.52, pp ×1.9)."."""
    n_measured = len({r.measured.type for r in plan.rows if r.measured is not None})
    if not plan.speed_calibration:
        return (
            "* Speeds are predicted; measuring one quant's speed (Evaluate, or quantlens eval"
            " --speed) calibrates the others."
        )
    parts = []
    for place, c in plan.speed_calibration.items():
        ratios = ", ".join(
            f"{k} ×{c[f'{k}_ratio']:.2g}" for k in ("tg", "pp") if c.get(f"{k}_ratio")
        )
        where = {"cpu": "on the CPU", "gpu": "on the GPUs"}.get(place, f"at {place}")
        n = c["n"]
        parts.append(f"calibrated from {n} measurement{'s' if n != 1 else ''} {where} ({ratios})")
    text = f"Speeds: {n_measured} type{'s' if n_measured != 1 else ''} measured on this hardware"
    text += f"; ~ {'; '.join(parts)}"
    if any(r.speed_source == "predicted" for r in plan.rows):
        text += "; * predicted (other placement)"
    return text + "."
