"""Memory an evaluation really uses (NVML per GPU, the worker's RSS on the host) next to the plan.

The prediction is the planner's "current" row (the file as it is, no quantization) for the
settings the ``evaluate`` job uses: ``n_seq = n_batch / ctx`` sequences of ``ctx`` tokens in one
context, F16 KV cache, llama.cpp's default offload (all layers on a GPU build, none on a CPU
build). The measurement comes from :class:`qtapp.core.hardware.probe.HardwareProbe` (or its replay)
and ``/proc/<pid>/status``; nothing is made up: unknown stays ``None``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HOST = "CPU"
#: keys of a prediction beside the device totals: the CUDA overhead in a GPU's total, and
#: whether the model's matrices are floats (the built-in overheads differ for those)
OVERHEAD_SUFFIX = "/overhead"
FLOAT_MATRICES = "float_matrices"


@dataclass
class MemoryRow:
    """One device: what the plan predicted, what is in use now, the peak seen so far."""

    device: str  # "CUDA0", ... or "CPU"
    label: str  # "GPU 0: NVIDIA H200" or "host RAM (worker RSS)"
    predicted: int | None = None
    now: int | None = None
    peak: int | None = None

    def see(self, value: int | None) -> None:
        self.now = value
        if value is not None:
            self.peak = value if self.peak is None else max(self.peak, value)


def eval_context_settings(params: dict[str, Any]) -> Any:
    """The llama.cpp context the ``evaluate`` job opens (see ``engine/evaluate.py::_session``)."""
    from qtapp.core.fit.kv_model import ContextSettings

    n_ctx = int(params.get("ctx", 512))
    n_batch = int(params.get("batch", 2048))
    if n_batch >= n_ctx and n_batch % n_ctx:
        n_batch = n_ctx * (n_batch // n_ctx)
    n_seq = max(1, n_batch // n_ctx)
    return ContextSettings(
        n_ctx=n_seq * n_ctx,
        n_batch=min(n_batch, n_seq * n_ctx),
        n_ubatch=512,
        n_seq_max=n_seq,
    )


def eval_offload(params: dict[str, Any], gpu_offload: bool | None, n_gpus: int) -> int:
    """GPU layers the job uses: its ``n_gpu_layers``, else -1 (all) on a GPU build, else 0."""
    ngl = params.get("n_gpu_layers")
    if ngl is not None:
        return int(ngl)
    if not n_gpus or gpu_offload is False:
        return 0
    return -1


def eval_outputs(cs: Any) -> int:
    """Rows of logits one decode of the evaluation returns (``engine/evaluate.py``: positions
    from ``n_ctx // 2`` on, for each of the ``n_seq`` sequences of one batch)."""
    per_seq = cs.n_ctx // max(1, cs.n_seq_max)
    return int(cs.n_seq_max * min(per_seq - per_seq // 2, cs.n_batch))


def eval_repack() -> Any:
    """The repacking the evaluation's own loads get: the build's, except on AMX CPUs, where
    QuantLens turns it off (``engine/llama_session.py``: this build's AMX path crashes)."""
    from qtapp.core.fit.host_memory import HostRepack
    from qtapp.core.fit.sources import build_repack

    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            if any(ln.startswith("flags") and "amx_tile" in ln.split() for ln in fh):
                return HostRepack()
    except OSError:
        pass
    return build_repack()


def predict(
    model: str | Path, params: dict[str, Any], report: Any, gpu_offload: bool | None
) -> tuple[dict[str, int], str]:
    """Predicted bytes per device (``CUDA0``..., ``CPU``) and a line that says what was planned.

    ``report`` is a HardwareReport (or None: CPU only); ``gpu_offload`` is the llama.cpp build's
    answer (None: unknown, assumed like llama.cpp's default on a GPU build).
    """
    from qtapp.core.fit.devices import devices_from_report, host_device
    from qtapp.core.fit.host_memory import HostLoad
    from qtapp.core.fit.placement import group_weights
    from qtapp.core.fit.plan import PlanInputs, current_weights, plan_row

    m = read_model_cached(model)
    gpus = devices_from_report(report) if report is not None else []
    ngl = eval_offload(params, gpu_offload, len(gpus))
    cs = eval_context_settings(params)
    load = HostLoad("mmap", eval_repack())
    inp = PlanInputs(m, cs, gpus if ngl != 0 else [], host_device(report), load=load)
    cur = m.memo.get("current")
    if cur is None:
        cur = m.memo["current"] = current_weights(m)
    row = plan_row(inp, cur, ngl=ngl if gpus and ngl != 0 else None)
    out = {d.device: int(d.total_bytes) for d in row.devices}
    # what the plan assumed CUDA itself takes on each GPU it used, and for which kind of
    # weights: with NVML's peak, the CUDA overhead the user's GPU really has (fit/cuda_overhead)
    for d in row.devices:
        if d.device != HOST and d.overhead_bytes:
            out[f"{d.device}{OVERHEAD_SUFFIX}"] = int(d.overhead_bytes)
    if any(d.device != HOST and d.overhead_bytes for d in row.devices):
        n_all = max(int(m._int("block_count")), m.n_layer)
        floats = group_weights(m, cur, n_all, load.repack).has_float_matrices
        out[FLOAT_MATRICES] = int(floats)
    # the evaluation asks for the logits of each chunk's second half, in every sequence at once:
    # llama.cpp grows its host output buffer from one row per sequence to all of those rows
    out[HOST] = out.get(HOST, 0) + m.n_vocab * 4 * max(0, eval_outputs(cs) - cs.n_seq_max)
    for g in gpus:  # a CPU-only run still shows the GPUs it leaves alone
        out.setdefault(g.name, 0)
    where = "all layers on the GPU" if ngl < 0 and gpus else f"{ngl} GPU layers"
    if ngl == 0 or not gpus:
        where = "CPU only"
    note = (
        f"planned for {cs.n_seq_max} × {cs.n_ctx // cs.n_seq_max} tokens of context, "
        f"KV cache {cs.type_k}, {where}"
        + (" (assumed: build not probed yet)" if gpu_offload is None and gpus and ngl < 0 else "")
    )
    return out, note


def plan_for_run(
    model: str | Path, params: dict[str, Any], report: Any
) -> tuple[dict[str, int], str]:
    """:func:`predict` with the build's offload answer, or an empty plan and the reason (a bad
    header): the measurement goes on without a plan."""
    from qtapp.core.hardware.llama_build import cached_build

    build = cached_build()
    offload = build.supports_gpu_offload if build is not None else None
    try:
        return predict(model, params, report, offload)
    except Exception as exc:  # noqa: BLE001 - the measurement still works without a plan
        log.warning("no memory plan for %s: %s", model, exc)
        return {}, f"no plan ({exc})"


def predicted_metrics(predicted: dict[str, int]) -> dict[str, int]:
    """``mem_pred_<dev>_bytes`` for the results store (the keys :class:`MemoryTracker` writes),
    ``mem_pred_overhead_<dev>_bytes`` for the CUDA overhead in it, ``mem_float_matrices``."""
    out = {}
    for key, v in predicted.items():
        if key == FLOAT_MATRICES:
            out["mem_float_matrices"] = int(v)
        elif key.endswith(OVERHEAD_SUFFIX):
            out[f"mem_pred_overhead_{key.removesuffix(OVERHEAD_SUFFIX).lower()}_bytes"] = int(v)
        else:
            out[f"mem_pred_{key.lower()}_bytes"] = int(v)
    return out


_MODELS: dict[tuple[str, float, int], Any] = {}


def read_model_cached(path: str | Path) -> Any:
    """``read_model`` once per file version (Gemma's 262k vocabulary takes ~100 ms to parse)."""
    from qtapp.core.gguf.model import read_model

    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_mtime, st.st_size)
    m = _MODELS.get(key)
    if m is None:
        m = _MODELS[key] = read_model(p)
        while len(_MODELS) > 8:
            _MODELS.pop(next(iter(_MODELS)))
    return m


def process_rss(pid: int | None) -> int | None:
    """Resident memory of ``pid`` in bytes (``VmRSS`` in /proc/<pid>/status), None if unknown."""
    if not pid:
        return None
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            try:
                return int(parts[1]) * 1024  # kB
            except (IndexError, ValueError):
                return None
    return None


def gpu_used_by_us(gpu: Any) -> int | None:
    """VRAM in use on ``gpu`` minus what other processes hold (when NVML says), in bytes."""
    used = getattr(gpu, "used_bytes", None)
    if used is None:
        return None
    others = getattr(gpu, "used_by_others_bytes", None)
    return max(0, int(used) - int(others)) if others is not None else int(used)


class MemoryTracker:
    """Rows per device for one run; :meth:`sample` takes a poll, :meth:`metrics` the peaks."""

    def __init__(self, predicted: dict[str, int], labels: dict[str, str]) -> None:
        self.rows: dict[str, MemoryRow] = {
            dev: MemoryRow(dev, labels.get(dev, dev), predicted.get(dev)) for dev in labels
        }
        #: what the plan assumed beyond the devices' totals (the CUDA overheads in them)
        self.assumed = {
            k: v for k, v in predicted.items() if k == FLOAT_MATRICES or k.endswith(OVERHEAD_SUFFIX)
        }

    @classmethod
    def for_report(cls, report: Any, predicted: dict[str, int]) -> MemoryTracker:
        labels: dict[str, str] = {}
        for i, gpu in enumerate(getattr(report, "gpus", ()) or ()):
            labels[f"CUDA{i}"] = getattr(gpu, "label", f"GPU {i}")
        labels[HOST] = "host RAM (worker RSS)"
        return cls(predicted, labels)

    def sample(self, report: Any, rss: int | None) -> None:
        """One reading: ``report`` from the probe's poll, ``rss`` from :func:`process_rss`."""
        for i, gpu in enumerate(getattr(report, "gpus", ()) or ()):
            row = self.rows.get(f"CUDA{i}")
            if row is not None:
                row.see(gpu_used_by_us(gpu))
        host = self.rows.get(HOST)
        if host is not None:
            host.see(rss)

    def metrics(self) -> dict[str, int]:
        """``mem_peak_<dev>_bytes`` and ``mem_pred_<dev>_bytes`` for the results store."""
        out: dict[str, int] = {}
        for dev, row in self.rows.items():
            name = dev.lower()
            if row.peak is not None:
                peak = "host_rss" if dev == HOST else name
                out[f"mem_peak_{peak}_bytes"] = int(row.peak)
        predicted = {d: r.predicted for d, r in self.rows.items() if r.predicted is not None}
        out.update(predicted_metrics({**predicted, **self.assumed}))
        return out
