"""Worker handler ``dry_load``: llama.cpp's own KV-cache and compute-buffer sizes, per device.

The model is loaded with ``no_alloc = True`` and ``load_mode = LLAMA_LOAD_MODE_NONE`` (with mmap
the same call aborts the process), then a context is created with llama.cpp's tool defaults
(``swa_full`` off, flash attention auto, n_batch 2048, n_ubatch 512, one sequence). Nothing is
allocated; the sizes come from the log lines llama.cpp prints while it plans its buffers.
"""

from __future__ import annotations

import ctypes
import os
import re
import tempfile
import time
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.gguf.lean import lean_copy
from qtapp.core.jobs.engine.llama_lib import llama_cpp
from qtapp.core.jobs.engine.llama_log import LlamaLog

MIB = 1024 * 1024
_BUF = re.compile(
    r"^(?P<src>\w+):\s+(?P<dev>\S+)\s+(?P<kind>KV|RS|compute|output|model)\s+buffer size\s+=\s+"
    r"(?P<mib>[\d.]+)\s+MiB"
)
_KV_SIZE = re.compile(
    r"^llama_kv_cache:\s+size\s+=\s+([\d.]+)\s+MiB\s+\(\s*(\d+)\s+cells,\s+(\d+)\s+layers"
)
_RS_SIZE = re.compile(r"^llama_memory_recurrent:\s+size\s+=\s+([\d.]+)\s+MiB")
_FA = re.compile(r"flash_attn\s*=\s*(\w+)|Flash Attention was auto, set to (\w+)")

KV_TYPES = {"f32": 0, "f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7,
            "iq4_nl": 20}  # fmt: skip
FLASH = {"auto": -1, "off": 0, "on": 1}


def parse_buffers(lines: list[str]) -> dict[str, Any]:
    """Sum llama.cpp's logged buffer sizes per device: {device: {kind: bytes}} plus totals."""
    devices: dict[str, dict[str, int]] = {}
    kv_caches: list[dict[str, Any]] = []
    flash = None
    for line in lines:
        s = line.strip()
        m = _BUF.match(s)
        if m:
            dev = m["dev"].removesuffix("_Mapped")
            kind = {"KV": "kv", "RS": "recurrent"}.get(m["kind"], m["kind"])
            slot = devices.setdefault(dev, {})
            slot[kind] = slot.get(kind, 0) + round(float(m["mib"]) * MIB)
            continue
        m = _KV_SIZE.match(s)
        if m:
            kv_caches.append(
                {"bytes": round(float(m[1]) * MIB), "cells": int(m[2]), "layers": int(m[3])}
            )
            continue
        m = _FA.search(s)
        if m:
            flash = (m[1] or m[2]).lower()
    return {"devices": devices, "kv_caches": kv_caches, "flash_attn": flash}


def dry_load(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """params: model, n_ctx, type_k, type_v, n_batch, n_ubatch, flash_attn, swa_full,
    n_gpu_layers, n_seq_max. Returns per-device buffer sizes in bytes.

    A no-alloc load reads a lean copy of the header without the vocabulary (see
    :func:`~qtapp.core.gguf.lean.lean_copy`); ``lean`` false loads the file itself (the tests
    compare both); a ``real`` load always loads the file."""
    model_path = str(params["model"])
    if params.get("real", False) or not params.get("lean", True):
        return load_figures(model_path, params)
    with tempfile.TemporaryDirectory(prefix="quantlens-lean-") as tmp:
        try:
            lean = str(lean_copy(model_path, tmp, no_vocab=True))
        except (OSError, QuantLensError):  # a full disk: the load is only slower
            return load_figures(model_path, params)
        try:
            return load_figures(lean, params)
        except QuantLensError as exc:
            raise QuantLensError(exc.message.replace(lean, model_path), exc.hint) from None


def load_figures(model_path: str, params: dict[str, Any]) -> dict[str, Any]:
    """The no-alloc load of ``model_path`` itself (a lean copy already, or a real load)."""
    lines: list[str] = []
    t0 = time.perf_counter()
    with LlamaLog(lambda _lvl, line: lines.append(line)) as log:
        llama_cpp.llama_backend_init()
        mp, _keep = _model_params(params)
        rss_before = rss_bytes()
        model = llama_cpp.llama_model_load_from_file(model_path.encode(), mp)
        hwm_model = hwm_bytes()
        if not model:
            log.flush()
            detail = next(
                (ln.strip() for ln in reversed(lines) if "error" in ln.lower()),
                "llama.cpp could not load it",
            )
            raise QuantLensError(
                f"llama.cpp could not load {model_path}: {detail}",
                "Check that the file is a complete GGUF model of a supported architecture.",
            )
        try:
            weights = int(llama_cpp.llama_model_size(model))
            ctx = llama_cpp.llama_init_from_model(model, _context_params(params))
            if not ctx:
                log.flush()
                detail = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
                raise QuantLensError(
                    f"llama.cpp could not create a context: {detail}",
                    "Try another KV type or context size.",
                )
            n_ctx = int(llama_cpp.llama_n_ctx(ctx))
            rss = rss_bytes()
            llama_cpp.llama_free(ctx)
        finally:
            llama_cpp.llama_model_free(model)
    parsed = parse_buffers(lines)
    return {
        "weights_bytes": weights,
        "n_ctx": n_ctx,
        "seconds": time.perf_counter() - t0,
        "rss_bytes": rss,
        # the process's resident memory before the load, and its peak once the weights are in
        "rss_before_bytes": rss_before,
        "hwm_after_model_bytes": hwm_model,
        **parsed,
    }


def _model_params(params: dict[str, Any]) -> tuple[llama_cpp.llama_model_params, list[Any]]:
    """llama.cpp's model params for this load, and the buffers they point to (keep them)."""
    mp = llama_cpp.llama_model_default_params()
    real = bool(params.get("real", False))
    mp.no_alloc = not real  # a real load (benchmarks, tests) allocates and maps for real
    mp.load_mode = llama_cpp.LLAMA_LOAD_MODE_MMAP if real else llama_cpp.LLAMA_LOAD_MODE_NONE
    if real and params.get("load_mode") == "none":  # llama.cpp's --load-mode none
        mp.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE
    mp.n_gpu_layers = int(params.get("n_gpu_layers", -1))
    split = params.get("tensor_split")
    keep: list[Any] = []
    if split:
        arr = (ctypes.c_float * 128)(*[float(x) for x in split])
        keep.append(arr)
        mp.tensor_split = ctypes.cast(arr, ctypes.POINTER(ctypes.c_float))
    return mp, keep


def _context_params(params: dict[str, Any]) -> llama_cpp.llama_context_params:
    """llama.cpp's context params: size, batches, KV types, flash attention, one thread."""
    cp: llama_cpp.llama_context_params = llama_cpp.llama_context_default_params()
    cp.n_ctx = int(params.get("n_ctx", 4096))
    cp.n_batch = int(params.get("n_batch", 2048))
    cp.n_ubatch = int(params.get("n_ubatch", 512))
    cp.n_seq_max = int(params.get("n_seq_max", 1))
    cp.type_k = KV_TYPES[str(params.get("type_k", "f16")).lower()]
    cp.type_v = KV_TYPES[str(params.get("type_v", "f16")).lower()]
    cp.flash_attn_type = FLASH[str(params.get("flash_attn", "auto")).lower()]
    cp.swa_full = bool(params.get("swa_full", False))
    cp.n_threads = cp.n_threads_batch = 1
    return cp


def rss_bytes() -> int:
    """This process's resident memory (Linux), for real loads; 0 where unknown."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def hwm_bytes() -> int:
    """This process's peak resident memory so far (Linux ``VmHWM``); 0 where unknown."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def real_load(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """A real load (mmap, allocating): its logged buffers are what llama.cpp really allocates."""
    return dry_load({**params, "real": True}, emit)


def dry_load_many(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """params: configs, a list of ``dry_load`` params; one child for all (tests, benches)."""
    return {"runs": [dry_load(dict(c), emit) for c in params.get("configs", [])]}
