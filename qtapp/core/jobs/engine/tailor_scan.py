"""Worker handler ``tailor_scan``: the measured KL-divergence increase of every tensor group at
every candidate type, the rest of the model staying at the high type.

Cheap by construction: the source is quantized once per candidate type ("every tensor at T"
through one ``--tensor-type .*=T`` rule, so llama.cpp's fallbacks apply as in a real recipe)
and once at the high type; each "only this group lowered" model is then spliced (a new GGUF
header, tensor data copied from the two files in the kernel) into the work folder, scored
against the stored base log-probs on a short calibration window, and deleted. Group x type
pairs whose tensors end up as the same ggml types (fallbacks) are measured once; pairs equal
to the high type cost nothing. Everything is written in ``params["work"]``, which the parent
removes after the job, whatever ends it.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.base_cache import BaseCache
from qtapp.core.fit.quants import tensor_bytes
from qtapp.core.gguf.reader import GGUFFile, ggml_type_name, read_gguf
from qtapp.core.jobs.engine import lifeline
from qtapp.core.jobs.engine.evaluate import (
    _compute_base,
    _groups,
    _kld_block,
    _map_blocks,
    _session,
    _targets,
    read_text,
)
from qtapp.core.jobs.engine.llama_lib import llama_cpp
from qtapp.core.jobs.engine.llama_log import LlamaLog
from qtapp.core.jobs.engine.llama_session import Aborted, AbortFlag
from qtapp.core.jobs.engine.qparams import QuantParams, QuantRequest
from qtapp.core.jobs.events import Cancelled, Event, Progress

Emit = Callable[[Event], None]
_HEAD = 24  # magic, version, tensor count, metadata count


# -- splicing ------------------------------------------------------------------------------------
def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _copy(src: Any, dst: Any, offset: int, n: int) -> None:
    """Copy ``n`` bytes of ``src`` from ``offset`` to ``dst``'s position (in the kernel)."""
    done = 0
    while done < n:
        try:
            k = os.copy_file_range(src.fileno(), dst.fileno(), n - done, offset + done)
        except (AttributeError, OSError):
            src.seek(offset + done)
            dst.write(src.read(n - done))
            return
        if k <= 0:
            raise OSError("copy_file_range copied nothing")
        done += k


def write_spliced(high: GGUFFile, low: GGUFFile, lowered: set[str], out: Path) -> int:
    """``high`` with the tensors named in ``lowered`` taken from ``low``; returns bytes written.

    The metadata section is copied verbatim from ``high`` (same model, same keys)."""
    lows = {t.name: t for t in low.tensors}
    align = high.alignment
    infos = b""
    plan: list[tuple[GGUFFile, int, int]] = []
    offset = 0
    for t in high.tensors:
        src_file, src = (low, lows[t.name]) if t.name in lowered else (high, t)
        nbytes = tensor_bytes(ggml_type_name(src.type_id), src.shape)
        infos += _string(t.name) + struct.pack("<I", len(src.shape))
        infos += struct.pack(f"<{len(src.shape)}Q", *src.shape)
        infos += struct.pack("<IQ", src.type_id, offset)
        plan.append((src_file, src_file.data_offset + src.offset, nbytes))
        offset += (nbytes + align - 1) // align * align
    with high.path.open("rb") as fh:
        head = fh.read(_HEAD + high.kv_bytes)
    header = head + infos  # same tensor and metadata counts as ``high``
    header += b"\0" * (-len(header) % align)
    with out.open("wb") as dst:
        dst.write(header)
        handles = {id(f): f.path.open("rb") for f in (high, low)}
        try:
            for f, at, n in plan:
                dst.flush()
                _copy(handles[id(f)], dst, at, n)
                dst.seek(0, os.SEEK_END)
                pad = -n % align
                if pad:
                    dst.write(b"\0" * pad)
        finally:
            for h in handles.values():
                h.close()
        return dst.tell()


# -- the job -------------------------------------------------------------------------------------
def _quantize_all(model: str, out: Path, high: str, to: str, params: dict[str, Any]) -> None:
    request = QuantRequest(
        target=high,
        n_layer=int(params.get("n_layer") or 0),
        nthread=int(params.get("threads") or 0),
        allow_requantize=bool(params.get("allow_requantize")),
        extra_rules=[(".*", to)],
    )
    qp = QuantParams(request, dry_run=False)
    with LlamaLog(_quiet):
        code = llama_cpp.llama_model_quantize(model.encode(), str(out).encode(), qp.pointer())
    if code != 0 or not out.is_file():
        raise QuantLensError(
            f"llama.cpp could not quantize {Path(model).name} to {to} for the scan.",
            "Check that the model is a complete F16/BF16/F32 GGUF file; the log has llama.cpp's "
            "reason.",
        )


def _quiet(_level: int, _text: str) -> None:
    """llama.cpp's quantize log is not needed: the files' headers say what it did."""


class _Scorer:
    """Mean and 99th-percentile KLD of one model file against the cached base rows."""

    def __init__(
        self, cache: BaseCache, params: dict[str, Any], abort: AbortFlag, pool: ThreadPoolExecutor
    ) -> None:
        self.cache = cache
        self.params = params
        self.abort = abort
        self.pool = pool
        self.tokens = cache.tokens()
        self.n_ctx = int(params["ctx"])
        self.n_chunk = cache.chunks_total
        self.n_seq = max(1, min(int(params["batch"]) // self.n_ctx, self.n_chunk))
        self.bases = [cache.load_chunk(i) for i in range(self.n_chunk)]

    def __call__(self, path: Path) -> tuple[float, float]:
        assert self.tokens is not None
        per = self.n_ctx - self.n_ctx // 2
        klds: list[np.ndarray] = []
        with _session(path, self.params, self.abort, self.n_seq) as sess:
            for i, n_seq_batch, rows in _groups(sess, self.tokens, self.n_ctx, self.n_chunk):
                for s in range(n_seq_batch):
                    block = rows[s * per : s * per + per - 1]
                    tg = _targets(self.tokens, i + s, self.n_ctx)
                    base = self.bases[i + s]
                    parts = _map_blocks(self.pool, partial(_kld_block, block, tg, base), len(tg))
                    klds += [p[2] for p in parts]
                self.abort.check()
        kl = np.concatenate(klds)
        return float(kl.mean()), float(np.percentile(kl, 99))


def tailor_scan(params: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """params: model, work (folder), high (type), candidates (types), groups ({name: [tensor
    names]}), text (path), ctx, batch, chunks, threads, n_layer, allow_requantize."""
    abort = AbortFlag()
    abort.install()
    work = Path(params["work"])
    work.mkdir(parents=True, exist_ok=True)
    cleanup = lifeline.add_cleanup(lambda: shutil.rmtree(work, ignore_errors=True))
    threads = int(params.get("threads") or 0) or None
    pool = ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 2)
    t_start = time.monotonic()
    try:
        return _scan(params, emit, abort, pool, work, t_start)
    except Aborted:
        emit(Cancelled(partial={}))
        sys.stdout.flush()
        raise SystemExit(0) from None
    finally:
        pool.shutdown(wait=False)
        shutil.rmtree(work, ignore_errors=True)
        lifeline.remove_cleanup(cleanup)


def _quantize_types(
    model: str,
    high: str,
    candidates: list[str],
    params: dict[str, Any],
    work: Path,
    emit: Emit,
    abort: AbortFlag,
) -> tuple[dict[str, GGUFFile], dict[str, dict[str, str]], dict[str, dict[str, int]]]:
    """The source at the high type and at every candidate: files, tensor types, tensor bytes."""
    files: dict[str, GGUFFile] = {}
    types_needed = [high, *[t for t in candidates if t != high]]
    for k, t in enumerate(types_needed):
        emit(Progress(0.05 + 0.1 * k / len(types_needed), f"quantizing to {t}", {"phase": "quant"}))
        path = work / f"all-{t}.gguf"
        _quantize_all(model, path, high, t, params)
        files[t] = read_gguf(path)
        abort.check()
    types = {t: {x.name: ggml_type_name(x.type_id) for x in f.tensors} for t, f in files.items()}
    sizes = {
        t: {x.name: tensor_bytes(ggml_type_name(x.type_id), x.shape) for x in f.tensors}
        for t, f in files.items()
    }
    return files, types, sizes


def _distinct(
    groups: dict[str, list[str]],
    candidates: list[str],
    types: dict[str, dict[str, str]],
    high: str,
) -> tuple[list[tuple[str, str]], dict[tuple[str, str], tuple[str, str] | None]]:
    """The (group, type) pairs to measure, one per distinct set of ggml types, and for the
    others the pair they equal (None: the high reference itself)."""
    todo: list[tuple[str, str]] = []
    same_as: dict[tuple[str, str], tuple[str, str] | None] = {}
    for g, names in groups.items():
        seen: dict[tuple[str, ...], str] = {tuple(types[high][n] for n in names): high}
        for t in candidates:
            key = tuple(types[t][n] for n in names)
            if key in seen:
                same_as[(g, t)] = None if seen[key] == high else (g, seen[key])
                continue
            seen[key] = t
            todo.append((g, t))
    return todo, same_as


def _measure(
    files: dict[str, GGUFFile],
    high: str,
    groups: dict[str, list[str]],
    todo: list[tuple[str, str]],
    score: _Scorer,
    work: Path,
    emit: Emit,
    abort: AbortFlag,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], float]:
    """Splice and score every pair of ``todo``: mean and 99% KLD, seconds per evaluation."""
    kld: dict[str, dict[str, float]] = {g: {} for g in groups}
    p99: dict[str, dict[str, float]] = {g: {} for g in groups}
    splice = work / "splice.gguf"
    per_eval = 0.0
    t_evals = time.monotonic()
    for k, (g, t) in enumerate(todo):
        write_spliced(files[high], files[t], set(groups[g]), splice)
        kld[g][t], p99[g][t] = score(splice)
        splice.unlink()
        done = k + 1
        per_eval = (time.monotonic() - t_evals) / done
        emit(
            Progress(
                0.15 + 0.85 * done / len(todo),
                f"group {done}/{len(todo)}: {g} at {t}: KLD {kld[g][t]:.5f}",
                {
                    "phase": "scan",
                    "done": done,
                    "total": len(todo),
                    "eta_s": per_eval * (len(todo) - done),
                },
            )
        )
        abort.check()
    return kld, p99, per_eval


def _whole_models(
    files: dict[str, GGUFFile],
    high: str,
    candidates: list[str],
    score: _Scorer,
    emit: Emit,
) -> dict[str, float]:
    """Mean KLD of every "all tensors at T" model: what the groups' sum should add up to."""
    out: dict[str, float] = {}
    for t in candidates:
        if t == high:
            continue
        emit(Progress(0.15, f"scoring the whole model at {t}", {"phase": "scan"}))
        out[t] = score(files[t].path)[0]
    return out


def _scan(
    params: dict[str, Any],
    emit: Emit,
    abort: AbortFlag,
    pool: ThreadPoolExecutor,
    work: Path,
    t_start: float,
) -> dict[str, Any]:
    model = str(params["model"])
    high = str(params["high"])
    candidates = [str(t) for t in params["candidates"]]
    groups: dict[str, list[str]] = {k: list(v) for k, v in params["groups"].items()}
    ev = {
        "base": model,
        "ctx": int(params.get("ctx", 512)),
        "batch": int(params.get("batch", 2048)),
        "chunks": int(params.get("chunks", 1)),
        "threads": params.get("threads"),
        "n_gpu_layers": params.get("n_gpu_layers"),
    }
    n_ctx = int(ev["ctx"] or 512)
    text = read_text(params.get("text"))

    def base_progress(event: Event) -> None:
        if isinstance(event, Progress):
            emit(Progress(0.05 * event.fraction / 0.5, event.message, {"phase": "base"}))

    cache = _compute_base(ev, text, abort, base_progress, pool)
    files, types, sizes = _quantize_types(model, high, candidates, params, work, emit, abort)
    todo, same_as = _distinct(groups, candidates, types, high)
    score = _Scorer(cache, ev, abort, pool)
    emit(Progress(0.15, "scoring the high-precision reference", {"phase": "scan"}))
    t0 = time.monotonic()
    ref_mean, ref_p99 = score(files[high].path)
    ref_seconds = time.monotonic() - t0
    whole = _whole_models(files, high, candidates, score, emit)
    kld, p99, per_eval = _measure(files, high, groups, todo, score, work, emit, abort)
    for (g, t), src in same_as.items():
        if src is None:
            kld[g][t], p99[g][t] = ref_mean, ref_p99
        else:
            kld[g][t], p99[g][t] = kld[src[0]][src[1]], p99[src[0]][src[1]]
    delta = {g: {t: kld[g][t] - ref_mean for t in candidates} for g in groups}
    return {
        "high": high,
        "candidates": candidates,
        "reference_kld": ref_mean,
        "reference_p99": ref_p99,
        "kld_all": whole,
        "kld": kld,
        "kld_p99": p99,
        "delta": delta,
        "sizes": sizes,
        "types": types,
        "evals": len(todo) + 1 + len(whole),
        "tokens": cache.chunks_total * (n_ctx - n_ctx // 2 - 1),
        "seconds_per_eval": per_eval or ref_seconds,
        "seconds": time.monotonic() - t_start,
    }
