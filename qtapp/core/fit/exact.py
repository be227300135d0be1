"""Exact figures from llama.cpp itself, cached on disk: per-tensor sizes of a target (the
quantizer's dry run) and KV / compute sizes of a context configuration (a no-alloc load).

Both run in the worker child (``dry_quantize`` / ``dry_load``). Results are cached under
``app_paths().cache / "fit"`` keyed by the model's fingerprint and size, the target or settings,
and the llama.cpp version, so reopening a model shows exact figures at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qtapp.core.app.paths import app_paths, write_json_atomic
from qtapp.core.fit.kv_model import ContextSettings
from qtapp.core.fit.plan import ExactFigures, Weights
from qtapp.core.fit.quants import Recipe
from qtapp.core.gguf.model import ModelInfo
from qtapp.core.jobs.events import Event, Finished
from qtapp.core.jobs.job import JobHooks, JobSpec

log = logging.getLogger(__name__)


def llama_version() -> str:
    from qtapp.core.hardware.llama_build import llama_cpp_python_version

    return llama_cpp_python_version() or "unknown"  # unknown: a separate cache, no error


def _cache_file(m: ModelInfo, kind: str, key: dict[str, Any]) -> Path:
    blob = json.dumps(
        {
            "kind": kind,
            "model": m.fingerprint,
            "size": m.size_on_disk,
            "llama": llama_version(),
            **key,
        },
        sort_keys=True,
    )
    digest = hashlib.sha1(blob.encode()).hexdigest()[:20]
    folder = app_paths().cache / "fit"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{m.fingerprint}-{kind}-{digest}.json"


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())  # a file _save wrote
        return data
    except (OSError, ValueError):
        return None


def _save(path: Path, data: dict[str, Any]) -> None:
    try:
        write_json_atomic(path, data)
    except OSError as exc:  # a full disk costs the cache, not the plan
        log.warning("could not cache %s: %s", path.name, exc)


# -- weights -------------------------------------------------------------------------------------
def weights_params(m: ModelInfo, target: str, recipe: Recipe | None = None) -> dict[str, Any]:
    """The dry run's params; ``recipe``: the user recipe named ``target`` (sent as a dict)."""
    params: dict[str, Any] = {
        "model": str(m.path),
        "target": target,
        "allow_requantize": True,
        "n_layer": m.n_layer,
    }
    if recipe is not None:
        params["user_recipes"] = [recipe.to_dict()]
    return params


def _weights_key(target: str, recipe: Recipe | None) -> dict[str, Any]:
    # a user recipe is keyed by its content too: editing it must not reuse old sizes
    return {"target": target, **({"recipe": recipe.to_dict()} if recipe is not None else {})}


def weights_from_result(target: str, result: dict[str, Any]) -> Weights:
    tensors = {t["name"]: int(t["bytes"]) for t in result.get("tensors", [])}
    types = {t["name"]: str(t["type"]) for t in result.get("tensors", [])}
    return Weights(
        target, tensors, exact=True, needs_imatrix=bool(result.get("needs_imatrix")), types=types
    )


def cached_weights(m: ModelInfo, target: str, recipe: Recipe | None = None) -> Weights | None:
    data = _load(_cache_file(m, "weights", _weights_key(target, recipe)))
    return weights_from_result(target, data) if data else None


def store_weights(
    m: ModelInfo, target: str, result: dict[str, Any], recipe: Recipe | None = None
) -> Weights:
    keep = {
        "tensors": [
            {"name": t["name"], "type": t["type"], "bytes": t["bytes"]}
            for t in result.get("tensors", [])
        ],
        "needs_imatrix": result.get("needs_imatrix", False),
    }
    _save(_cache_file(m, "weights", _weights_key(target, recipe)), keep)
    return weights_from_result(target, keep)


def exact_weights(m: ModelInfo, target: str, recipe: Recipe | None = None) -> Weights:
    """Blocking: the cached figures, or a dry-run quantization in a child process."""
    from qtapp.core.jobs.job import run_job

    hit = cached_weights(m, target, recipe)
    if hit is not None:
        return hit
    result = run_job("dry_quantize", **weights_params(m, target, recipe))
    return store_weights(m, target, result, recipe)


class ManyWeights(JobHooks):
    """Exact weights of many targets in one ``dry_quantize_many`` job, the same for the CLI and
    the window. Cached targets are taken at once; :meth:`end` stores the job's results in the
    job's own thread (JSON writes stay off the GUI thread)."""

    def __init__(
        self,
        m: ModelInfo,
        targets: list[str],
        recipes: Mapping[str, Recipe] | None = None,
        use_cache: bool = True,
    ) -> None:
        self.model = m
        self.recipes = dict(recipes or {})
        self.weights: dict[str, Weights] = {}
        self.errors: dict[str, str] = {}
        self.missing: list[str] = []
        for t in targets:
            hit = cached_weights(m, t, self.recipes.get(t)) if use_cache else None
            if hit is None:
                self.missing.append(t)
            else:
                self.weights[t] = hit

    def spec(self) -> JobSpec | None:
        """The job that sizes the targets not in the cache (None: nothing to do)."""
        specs = self.specs(1)
        return specs[0] if specs else None

    def specs(self, parts: int, memory: dict[str, Any] | None = None) -> list[JobSpec]:
        """The missing targets in up to ``parts`` jobs (one child per core: each dry run is a
        separate llama.cpp quantizer call). ``memory``: a dry load's parameters, made by the
        first job before its dry runs (it gets a smaller share of them)."""
        if not self.missing:
            return []
        parts = max(1, min(parts, len(self.missing)))
        first = len(self.missing) // parts
        if memory is not None and parts > 1:
            first = max(0, first - 2)  # the load costs about two dry runs (measured, 397B seed)
        rest = self.missing[first:]
        shares = [self.missing[:first]] + [rest[k :: parts - 1] for k in range(parts - 1)]
        if parts == 1:
            shares = [self.missing]
        out = []
        for k, share in enumerate(shares):
            mine = [self.recipes[t].to_dict() for t in share if t in self.recipes]
            params: dict[str, Any] = {
                "model": str(self.model.path),
                "targets": share,
                "allow_requantize": True,
                "n_layer": self.model.n_layer,
                "user_recipes": mine,
            }
            if k == 0 and memory is not None:
                params["memory"] = memory
            out.append(JobSpec("dry_quantize_many", params))
        return out

    def end(self, terminal: Event) -> None:
        if isinstance(terminal, Finished):
            self.take(terminal.result)

    def take(self, result: dict[str, Any]) -> None:
        for t, r in result.get("results", {}).items():
            self.weights[t] = store_weights(self.model, t, r, self.recipes.get(t))
        self.errors.update(result.get("errors", {}))


# -- KV and compute --------------------------------------------------------------------------------
def memory_params(m: ModelInfo, cs: ContextSettings) -> dict[str, Any]:
    flash = (
        "on"
        if cs.flash_attn_on
        and cs.flash_attn == "auto"
        and cs.type_v.lower() not in ("f16", "f32", "bf16")
        else cs.flash_attn
    )
    return {
        "model": str(m.path),
        "n_ctx": cs.n_ctx,
        "type_k": cs.type_k,
        "type_v": cs.type_v,
        "n_batch": cs.n_batch,
        "n_ubatch": cs.n_ubatch,
        "n_seq_max": cs.n_seq_max,
        "swa_full": cs.swa_full,
        "flash_attn": flash,
        "n_gpu_layers": 0,
    }


def figures_from_result(result: dict[str, Any]) -> ExactFigures:
    devices = result.get("devices", {})
    kv = sum(int(c["bytes"]) for c in result.get("kv_caches", []))
    rec = sum(int(d.get("recurrent", 0)) for d in devices.values())
    compute = sum(int(d.get("compute", 0)) for d in devices.values())
    out = sum(int(d.get("output", 0)) for d in devices.values())
    return ExactFigures(kv, rec, compute, out)


def _settings_key(cs: ContextSettings) -> dict[str, Any]:
    return {"settings": cs.to_dict()}


def cached_memory(m: ModelInfo, cs: ContextSettings) -> ExactFigures | None:
    data = _load(_cache_file(m, "memory", _settings_key(cs)))
    return figures_from_result(data) if data else None


def store_memory(m: ModelInfo, cs: ContextSettings, result: dict[str, Any]) -> ExactFigures:
    keep = {k: result.get(k) for k in ("devices", "kv_caches", "flash_attn", "n_ctx")}
    _save(_cache_file(m, "memory", _settings_key(cs)), keep)
    return figures_from_result(keep)


def exact_memory(m: ModelInfo, cs: ContextSettings) -> ExactFigures:
    """Blocking: the cached figures, or a no-alloc load in a child process."""
    from qtapp.core.jobs.job import run_job

    hit = cached_memory(m, cs)
    if hit is not None:
        return hit
    return store_memory(m, cs, run_job("dry_load", **memory_params(m, cs)))


class MemoryFigures(JobHooks):
    """One ``dry_load`` job for the window: :meth:`end` stores its figures in the job's thread."""

    def __init__(self, m: ModelInfo, cs: ContextSettings) -> None:
        self.model = m
        self.settings = cs
        self.figures: ExactFigures | None = None

    def spec(self) -> JobSpec:
        return JobSpec("dry_load", memory_params(self.model, self.settings))

    def end(self, terminal: Event) -> None:
        if isinstance(terminal, Finished):
            self.figures = store_memory(self.model, self.settings, terminal.result)
