"""The sensitivity scan's parent side: settings, its job spec, its cost, and its cache.

The child (``qtapp.core.jobs.engine.tailor_scan``) measures the KL divergence against the
full-precision source when only one tensor group is lowered to a candidate type and the rest
stays at the high type. A result is cached under ``app_paths().cache / "tailor"`` keyed by
the model (THE fingerprint, a sample of its bytes, its size and modification time: a changed
model is scanned again), the calibration text's hash, the settings, the groups and the
llama.cpp version.

The high type is Q8_0, not F16: a Q8_0 model is within ~0.001 KLD of F16 on the models we
measured, it is what every candidate mix is compared against when it keeps a tensor "high",
and it halves the bytes copied for every spliced model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qtapp.core.app.paths import app_paths, resources_dir, write_json_atomic
from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.base_cache import model_fingerprint, text_hash
from qtapp.core.gguf.model import ModelInfo
from qtapp.core.jobs.events import Event, Finished
from qtapp.core.jobs.job import Job, JobSpec, run_to_end
from qtapp.core.tailor.groups import Group, make_groups

log = logging.getLogger(__name__)

DEFAULT_CALIBRATION_TEXT = "texts/kjv-leviticus-numbers.txt"
#: candidates llama.cpp makes without an importance matrix; fallbacks apply per tensor shape
DEFAULT_CANDIDATES = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
HIGH = "Q8_0"
#: seconds per scored token per billion weights, and per spliced file per GB, measured on
#: Gemma 3 270M on 2 cores (refined by the measured seconds of earlier scans on this machine)
_SEC_PER_TOKEN_GPARAM = 0.05
_SEC_PER_GB = 0.6
CACHE_VERSION = 2


@dataclass(frozen=True)
class ScanSettings:
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    high: str = HIGH
    bands: int = 4  # layer bands per tensor class (first and last eighth on their own)
    ctx: int = 256
    chunks: int = 1  # calibration chunks of ``ctx`` tokens (the second half of each is scored)
    batch: int = 2048
    text: str | None = None  # calibration text; None: the bundled Leviticus-Numbers
    threads: int = 0

    def text_path(self) -> Path:
        return Path(self.text) if self.text else resources_dir() / DEFAULT_CALIBRATION_TEXT

    def validate(self) -> None:
        from qtapp.core.fit.quants import QUANT_TYPES, ggml_type_id

        for t in (*self.candidates, self.high):
            try:
                ggml_type_id(t)
            except ValueError:
                raise QuantLensError(
                    f"Unknown candidate type {t!r}.", "Use ggml types such as Q4_K, Q5_0, Q8_0."
                ) from None
            base = QUANT_TYPES.get(t) or QUANT_TYPES.get(t + "_M")
            if base is not None and base.needs_imatrix:
                raise QuantLensError(
                    f"{t} needs an importance matrix, which the scan does not use.",
                    "Choose types such as Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.",
                )
        if not self.candidates:
            raise QuantLensError("No candidate types.", "Give at least one, e.g. Q4_K.")
        if self.bands < 1 or self.chunks < 1 or self.ctx < 16:
            raise QuantLensError(
                "The scan needs at least 1 band, 1 chunk and a context of 16 tokens.",
                "Use the defaults (4 bands, 1 chunk of 256 tokens).",
            )
        if not self.text_path().is_file():
            raise QuantLensError(
                f"The calibration text {self.text_path()} does not exist.",
                "Give a UTF-8 text file.",
            )


@dataclass
class Scan:
    """A finished scan: measured KLD per group and type, and each type's exact tensor sizes."""

    groups: list[Group]
    high: str
    candidates: list[str]
    reference_kld: float
    delta: dict[str, dict[str, float]]
    sizes: dict[str, dict[str, int]]  # type -> tensor -> exact bytes (llama.cpp's own files)
    types: dict[str, dict[str, str]]  # type -> tensor -> ggml type after fallbacks
    evals: int
    seconds: float
    cached: bool = False
    kld_all: dict[str, float] = field(default_factory=dict)  # every tensor at T, mean KLD
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_result(cls, groups: list[Group], r: dict[str, Any], cached: bool) -> Scan:
        return cls(
            groups,
            str(r["high"]),
            list(r["candidates"]),
            float(r["reference_kld"]),
            r["delta"],
            {t: {n: int(b) for n, b in s.items()} for t, s in r["sizes"].items()},
            r["types"],
            int(r["evals"]),
            float(r["seconds"]),
            cached,
            {t: float(v) for t, v in r.get("kld_all", {}).items()},
            r,
        )


def model_groups(m: ModelInfo, settings: ScanSettings) -> list[Group]:
    return make_groups([(t.name, t.shape) for t in m.tensors], m.n_layer, settings.bands)


def check_source(m: ModelInfo, requantize: bool = False) -> None:
    """Refuse a quantized source unless the user allows requantizing (every mix would be made
    from already-rounded weights, and measured against them)."""
    quantized = [t for t in m.tensors if len(t.shape) >= 2 and t.type not in ("F32", "F16", "BF16")]
    if quantized and not requantize:
        raise QuantLensError(
            f"{m.path.name} is already quantized ({quantized[0].type} tensors); tailoring it "
            "would requantize rounded weights and measure against them.",
            "Give the F16/BF16/F32 model, or add --requantize.",
        )


def _cache_file(m: ModelInfo, settings: ScanSettings, groups: list[Group]) -> Path:
    from qtapp.core.fit.exact import llama_version

    text = settings.text_path().read_text(encoding="utf-8", errors="replace")
    st = m.path.stat()
    key = {
        "version": CACHE_VERSION,
        "model": m.fingerprint,
        "sample": model_fingerprint(m.path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "text": text_hash(text),
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("text", "threads")},
        "groups": [[g.name, list(g.tensors)] for g in groups],
        "llama": llama_version(),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    folder = app_paths().cache / "tailor"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{m.fingerprint}-scan-{digest}.json"


def cached_scan(m: ModelInfo, settings: ScanSettings) -> Scan | None:
    groups = model_groups(m, settings)
    try:
        data = json.loads(_cache_file(m, settings, groups).read_text())
        return Scan.from_result(groups, data, cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store(m: ModelInfo, settings: ScanSettings, groups: list[Group], r: dict[str, Any]) -> None:
    path = _cache_file(m, settings, groups)
    try:
        write_json_atomic(path, r)
    except OSError as exc:  # a full disk costs the cache, not the result
        log.warning("could not cache the scan %s: %s", path.name, exc)


@dataclass(frozen=True)
class ScanCost:
    """What the scan will cost, shown before it starts."""

    evals: int  # models to score (fallback duplicates are skipped)
    quantizations: int
    tokens_per_eval: int
    seconds: float

    def describe(self) -> str:
        return (
            f"{self.quantizations} quantizations, then {self.evals} models of "
            f"{self.tokens_per_eval} scored tokens each: about {self.seconds / 60:.1f} min"
        )


#: llama.cpp's fallbacks for rows not divisible by 256 (``tensor_type_fallback`` in
#: llama-quant.cpp), only to count the scan's evaluations before it starts
_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def _effective(t: str, ncols: int) -> str:
    from qtapp.core.fit.quants import BLOCK_SIZES

    block = BLOCK_SIZES.get(t, (1, 1))[0]
    return _FALLBACK.get(t, t) if ncols % block else t


def count_evals(m: ModelInfo, settings: ScanSettings) -> int:
    """The evaluations the scan makes: the reference, each candidate's whole model, then one
    per group and distinct set of tensor types (candidates that fall back to the same type, or
    to the high one, are free)."""
    shapes = {t.name: t.shape for t in m.tensors}
    evals = 1 + len([t for t in settings.candidates if t != settings.high])  # whole models
    for g in model_groups(m, settings):
        seen = {tuple(_effective(settings.high, shapes[n][0]) for n in g.tensors)}
        for t in settings.candidates:
            key = tuple(_effective(t, shapes[n][0]) for n in g.tensors)
            if key not in seen:
                seen.add(key)
                evals += 1
    return evals


def scan_cost(m: ModelInfo, settings: ScanSettings) -> ScanCost:
    """The evaluations and a time estimate: the measured seconds per evaluation of an earlier
    scan of this model, else scaled from the Gemma 3 270M figures."""
    evals = count_evals(m, settings)
    tokens = settings.chunks * (settings.ctx - settings.ctx // 2 - 1)
    gparams = m.n_params / 1e9
    gb_high = m.n_params * 8.5 / 8 / 1e9
    per_eval = tokens * gparams * _SEC_PER_TOKEN_GPARAM + gb_high * _SEC_PER_GB
    measured = _measured_per_eval(m, tokens)
    if measured is not None:
        per_eval = measured
    quant = (len(settings.candidates) + 1) * max(2.0, m.weights_bytes / 1e9 * 6)
    return ScanCost(evals, len(settings.candidates) + 1, tokens, evals * per_eval + quant)


def _measured_per_eval(m: ModelInfo, tokens: int) -> float | None:
    """Seconds per evaluation of an earlier scan of this model (any settings), per token."""
    folder = app_paths().cache / "tailor"
    for f in sorted(folder.glob(f"{m.fingerprint}-scan-*.json")):
        try:
            r = json.loads(f.read_text())
            return float(r["seconds_per_eval"]) * tokens / max(int(r["tokens"]), 1)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def scan_spec(m: ModelInfo, settings: ScanSettings, requantize: bool = False) -> JobSpec:
    """The job; its ``work`` folder (spliced models) is removed by :class:`ScanRecord`."""
    groups = model_groups(m, settings)
    work = Path(tempfile.mkdtemp(prefix="scan-", dir=_work_root()))
    params: dict[str, Any] = {
        "model": str(m.path),
        "work": str(work),
        "high": settings.high,
        "candidates": list(settings.candidates),
        "groups": {g.name: list(g.tensors) for g in groups},
        "text": str(settings.text_path()),
        "ctx": settings.ctx,
        "batch": settings.batch,
        "chunks": settings.chunks,
        "threads": settings.threads,
        "n_layer": m.n_layer,
        "allow_requantize": requantize,
    }
    return JobSpec("tailor_scan", params)


def _work_root() -> Path:
    root = app_paths().cache / "tailor" / "work"
    root.mkdir(parents=True, exist_ok=True)
    return root


class ScanRecord:
    """Around one scan job: removes its work folder whatever ends it, caches a result."""

    def __init__(self, m: ModelInfo, settings: ScanSettings, spec: JobSpec) -> None:
        self.model = m
        self.settings = settings
        self.spec = spec
        self.scan: Scan | None = None

    def end(self, terminal: Event) -> None:
        shutil.rmtree(self.spec.params["work"], ignore_errors=True)
        if isinstance(terminal, Finished):
            groups = model_groups(self.model, self.settings)
            _store(self.model, self.settings, groups, terminal.result)
            self.scan = Scan.from_result(groups, terminal.result, cached=False)


def run_scan(
    m: ModelInfo,
    settings: ScanSettings,
    requantize: bool = False,
    on_event: Callable[[Event], Any] | None = None,
    on_start: Callable[[Job], Any] | None = None,
    use_cache: bool = True,
) -> tuple[Scan | None, Event]:
    """The cached scan, or run one in this thread (CLI, bench, tests): (scan or None, terminal)."""
    check_source(m, requantize)
    settings.validate()
    if use_cache:
        hit = cached_scan(m, settings)
        if hit is not None:
            return hit, Finished(result=hit.raw)
    spec = scan_spec(m, settings, requantize)
    record = ScanRecord(m, settings, spec)
    terminal = run_to_end(spec, on_event, on_start, record.end)
    return record.scan, terminal
