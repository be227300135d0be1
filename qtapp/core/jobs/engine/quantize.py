"""Worker handler ``quantize``: a real ``llama_model_quantize`` run with progress and safe outputs.

Steps, all in the child: check the source and the output folder; a dry run (exact per-tensor
types and bytes, and whether an importance matrix is needed); refuse early what cannot work
(imatrix missing, requantize not allowed, disk too small, output exists); then the real run
into ``<out>.part`` (keep_split: ``<out-prefix>.part-0000i-of-0000n.gguf``), with progress from
the per-tensor log lines; rename only on success. On failure the partial files are removed here,
and again by the parent (``qtapp.core.quantize.jobs``) in case the child was killed.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import time
from pathlib import Path
from typing import Any, cast

from qtapp.core.errors import QuantLensError
from qtapp.core.fit.quants import Recipe
from qtapp.core.hardware.llama_build import llama_cpp_python_version
from qtapp.core.jobs.engine import lifeline
from qtapp.core.jobs.engine.dry_run import dry_quantize
from qtapp.core.jobs.engine.llama_lib import llama_cpp
from qtapp.core.jobs.engine.llama_log import LlamaLog
from qtapp.core.jobs.engine.qparams import QuantParams, QuantRequest
from qtapp.core.jobs.engine.quant_progress import ProgressTracker, failure_message
from qtapp.core.jobs.events import Progress
from qtapp.core.quantize.outputs import (
    METADATA_MARGIN,
    check_output_free,
    final_paths,
    part_paths,
    part_prefix,
    remove_partials,
)

log = logging.getLogger(__name__)

FLOAT_TYPES = {"F32", "F16", "BF16"}
#: llama_model_kv_override tags (llama.h)
_KV_INT, _KV_STR = 0, 3


def _check_source(model: Path) -> None:
    if model.is_dir():
        raise QuantLensError(
            f"The source model {model} is a folder, not a file.", "Give the path of a .gguf file."
        )
    if not model.is_file():
        raise QuantLensError(f"The source model {model} does not exist.", "Pick an existing file.")
    try:
        with model.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise QuantLensError(
            f"Cannot read {model}: {exc.strerror or exc}.", "Check the file's permissions."
        ) from exc
    if magic != b"GGUF":
        raise QuantLensError(
            f"{model.name} is not a GGUF model file.",
            "Pick a .gguf file (convert other formats with llama.cpp first).",
        )


def _check_output_dir(out: Path) -> None:
    folder = out.parent
    if folder.exists() and not folder.is_dir():
        raise QuantLensError(
            f"The output folder {folder} is a file, not a folder.", "Choose another output folder."
        )
    if not folder.is_dir():
        raise QuantLensError(
            f"The output folder {folder} does not exist.", "Create it or choose another folder."
        )
    probe = folder / f".quantlens-write-test-{os.getpid()}"
    try:  # os.access says yes to root even where writing fails (read-only mounts, sysfs)
        with probe.open("xb"):
            pass
        probe.unlink()
    except OSError as exc:
        raise QuantLensError(
            f"The output folder {folder} is not writable ({exc.strerror or exc}).",
            "Choose a folder you can write to.",
        ) from exc


def _request_fields(params: dict[str, Any]) -> dict[str, Any]:
    keys = set(QuantRequest.__dataclass_fields__) - {"user_recipes"}
    return {k: v for k, v in params.items() if k in keys}


def _dry_run(params: dict[str, Any], imatrix: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        return dry_quantize(params, lambda _ev: None, imatrix or None)
    except QuantLensError as exc:
        if "file bounds" in exc.message or "corrupted" in exc.message:
            detail = exc.message.split("failed to quantize:", 1)[-1].strip()
            raise QuantLensError(
                f"{Path(params['model']).name} is truncated or damaged: {detail}.",
                "Download or convert the model again; nothing was written.",
            ) from exc
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged header raises many kinds
        raise QuantLensError(
            f"Could not read {Path(params['model']).name}: the file is truncated or damaged "
            f"({type(exc).__name__}: {str(exc).rstrip('.')}).",
            "Download or convert the model again; nothing was written.",
        ) from exc


def _set_kv_overrides(qp: QuantParams, kvs: list[tuple[str, str | int]]) -> None:
    """Add ``quantize.imatrix.*`` metadata as llama-quantize does (kept alive on ``qp``)."""
    if not kvs:
        return
    arr = (llama_cpp.llama_model_kv_override * (len(kvs) + 1))()
    for i, (key, value) in enumerate(kvs):
        arr[i].key = key.encode()[:127]
        # llama_cpp annotates this field with the Python values it can hold, not its ctypes union
        union = cast("llama_cpp.llama_model_kv_override_value", arr[i].value)
        if isinstance(value, int):
            arr[i].tag = _KV_INT
            union.val_i64 = value
        else:
            arr[i].tag = _KV_STR
            union.val_str = value.encode()[:127]
    arr[len(kvs)].key = b""  # an empty key ends the list
    qp._keep.append(arr)  # noqa: SLF001 - the buffers live as long as the params
    qp.params.kv_overrides = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_kv_override))


def _limit_file_size(limit: int) -> None:
    """Test-only: make writes past ``limit`` bytes fail like a full disk (EFBIG, not SIGXFSZ)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def quantize(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """params: model, out, target, the QuantRequest fields, imatrix (path), overwrite,
    user_recipes (dicts); ``_fsize_limit`` (tests only)."""
    model = Path(params["model"])
    out = Path(params["out"])
    keep_split = bool(params.get("keep_split"))
    overwrite = bool(params.get("overwrite"))
    _check_source(model)
    _check_output_dir(out)
    params, split_count = _with_header(params, model)
    finals = final_paths(out, keep_split, split_count)
    _check_finals(finals, model, overwrite)

    imatrix_path = params.get("imatrix")
    imatrix, kvs = _load_imatrix(imatrix_path, emit)
    emit(Progress(fraction=0.0, message="sizing (dry run)", detail={"phase": "dry_run"}))
    dry = _dry_run({**params, "model": str(model)}, imatrix)
    tensors = dry["tensors"]
    _check_dry_run(dry, params, model, bool(imatrix_path))
    need = int(dry["bytes"]) + _metadata_bytes(model, tensors) + METADATA_MARGIN
    check_output_free(out.parent, need)

    qp = _quant_params(params, imatrix, kvs)

    parts = part_paths(out, keep_split, split_count)
    remove_partials(out, keep_split)
    # if the parent dies mid-write, the lifeline removes what was written before the child exits
    orphan_cleanup = lifeline.add_cleanup(lambda: remove_partials(out, keep_split))
    target_arg = _part_prefix(out) if keep_split else parts[0]
    if params.get("_fsize_limit"):
        _limit_file_size(int(params["_fsize_limit"]))

    sizes = {t["name"]: int(t["bytes"]) for t in tensors}
    tracker = ProgressTracker(emit, sizes, int(dry["bytes"]), len(tensors))
    emit(_started(dry["bytes"], len(tensors)))
    seconds, cpu_seconds = _run_quantizer(model, target_arg, qp, tracker, out, keep_split, need)
    _publish_all(parts, finals, out, keep_split, overwrite)
    lifeline.remove_cleanup(orphan_cleanup)

    file_bytes = sum(p.stat().st_size for p in finals)
    n_elements = sum(_elements(t["shape"]) for t in tensors)
    return {
        "target": params["target"],
        "ftype": dry["ftype"],
        "path": str(finals[0]),
        "paths": [str(p) for p in finals],
        "bytes": file_bytes,
        "tensor_bytes": int(dry["bytes"]),
        "predicted_bytes": int(dry["bytes"]),
        "bpw": int(dry["bytes"]) * 8 / n_elements if n_elements else None,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rules": dry["rules"],
        "imatrix": str(imatrix_path) if imatrix_path else None,
        "llama_cpp": llama_cpp_python_version() or "",
        "source": str(model),
    }


def _with_header(params: dict[str, Any], model: Path) -> tuple[dict[str, Any], int]:
    """``params`` with ``n_layer`` from the source's header when absent; its split count."""
    from qtapp.core.gguf.tensor_names import read_tensor_infos

    header = read_tensor_infos(model)  # fast; a damaged header fails here with a clear message
    params = {**params, "n_layer": int(params.get("n_layer") or header.n_layer)}
    split_count = max(int((header.metadata or {}).get("split.count", 1) or 1), 1)
    return params, split_count


def _check_finals(finals: list[Path], model: Path, overwrite: bool) -> None:
    """Refuse to overwrite the source, or an existing output unless ``overwrite``."""
    for final in finals:
        if final.exists() and (
            final.resolve() == model.resolve() or os.path.samefile(final, model)
        ):
            raise QuantLensError(
                "The output would overwrite the source model.",
                "Choose another output folder or name.",
            )
        if final.exists() and not overwrite:
            raise QuantLensError(
                f"{final.name} already exists in {final.parent}.",
                "Delete it, choose another output folder (--out), or replace it (--overwrite in "
                "the CLI; answer Yes when the Quantize page asks).",
            )


def _load_imatrix(
    imatrix_path: str | None, emit: Any
) -> tuple[dict[str, Any] | None, list[tuple[str, str | int]]]:
    """The importance matrix's data and the metadata it adds, or ``(None, [])`` without one."""
    if not imatrix_path:
        return None, []
    from qtapp.core.quantize.imatrix import load_imatrix

    emit(
        Progress(fraction=0.0, message="loading the importance matrix", detail={"phase": "imatrix"})
    )
    loaded = load_imatrix(imatrix_path)
    return loaded.data, loaded.kv_overrides()


def _check_dry_run(
    dry: dict[str, Any], params: dict[str, Any], model: Path, has_imatrix: bool
) -> None:
    """Refuse what the dry run shows cannot work: a missing imatrix, an unasked requantize."""
    if dry["needs_imatrix"] and not has_imatrix:
        raise QuantLensError(
            f"{params['target']} needs an importance matrix (imatrix) for this model.",
            "Choose an imatrix file made with llama-imatrix, or pick a type such as Q2_K, "
            "Q3_K_S or IQ3_S that works without one.",
        )
    quantized_src = [
        t for t in dry["tensors"] if t["src_type"] not in FLOAT_TYPES and t["src_type"] != t["type"]
    ]
    if quantized_src and not params.get("allow_requantize"):
        raise QuantLensError(
            f"{model.name} is already quantized ({quantized_src[0]['src_type']} tensors); "
            "requantizing loses quality.",
            "Quantize from an F16/BF16/F32 model, or allow it: --requantize in the CLI, or tick "
            '"I understand: requantize an already quantized model" on the Quantize page.',
        )


def _quant_params(
    params: dict[str, Any], imatrix: dict[str, Any] | None, kvs: list[tuple[str, str | int]]
) -> QuantParams:
    """llama.cpp's parameters for the real run: the request, user recipes, imatrix metadata."""
    recipes = {r["name"]: Recipe.from_dict(r) for r in params.get("user_recipes", [])}
    request = QuantRequest(**_request_fields(params), user_recipes=recipes)
    qp = QuantParams(request, dry_run=False, imatrix=imatrix)
    _set_kv_overrides(qp, kvs)
    return qp


def _started(total_bytes: int, count: int) -> Progress:
    """The first progress event of the real run."""
    return Progress(
        fraction=0.0,
        message="quantizing",
        detail={
            "phase": "quantize",
            "done_bytes": 0,
            "total_bytes": total_bytes,
            "count": count,
            "index": 0,
            "tensor": "",
            "elapsed": 0.0,
            "eta": None,
            "mb_per_s": 0.0,
        },
    )


def _run_quantizer(
    model: Path,
    target_arg: Path,
    qp: QuantParams,
    tracker: ProgressTracker,
    out: Path,
    keep_split: bool,
    need: int,
) -> tuple[float, float]:
    """llama.cpp's quantizer into the part files; wall and CPU seconds. Cleans up on failure."""
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    try:
        with LlamaLog(tracker.on_line):
            code = llama_cpp.llama_model_quantize(
                str(model).encode(), str(target_arg).encode(), qp.pointer()
            )
    except BaseException:
        remove_partials(out, keep_split)
        raise
    seconds, cpu_seconds = time.perf_counter() - t0, _cpu_seconds() - cpu0
    if code != 0:
        remove_partials(out, keep_split)
        raise failure_message(tracker.errors, out, need)
    return seconds, cpu_seconds


def _publish_all(
    parts: list[Path], finals: list[Path], out: Path, keep_split: bool, overwrite: bool
) -> None:
    """Rename every part file to its final name, once all of them are there."""
    missing = [p for p in parts if not p.exists()]
    if missing:
        remove_partials(out, keep_split)
        raise QuantLensError(
            f"llama.cpp finished but {missing[0].name} is missing.",
            "This is unexpected; see the log.",
        )
    for part, final in zip(parts, finals, strict=True):
        _publish(part, final, overwrite)


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (the quantizer's workers included)."""
    times = os.times()
    return times.user + times.system


def _publish(part: Path, final: Path, overwrite: bool) -> None:
    """Rename ``part`` to ``final``; without ``overwrite``, never replace a file that appeared."""
    if overwrite:
        os.replace(part, final)
        return
    try:
        os.link(part, final)  # fails if final exists: no race with another writer
    except FileExistsError as exc:
        part.unlink(missing_ok=True)
        raise QuantLensError(
            f"{final.name} appeared while quantizing; it was left alone.",
            "Delete it or choose another folder, then run again.",
        ) from exc
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        if final.exists():
            part.unlink(missing_ok=True)
            raise QuantLensError(
                f"{final.name} appeared while quantizing; it was left alone.",
                "Delete it or choose another folder.",
            ) from exc
        os.replace(part, final)
        return
    part.unlink()


def _elements(shape: list[int]) -> int:
    n = 1
    for dim in shape:
        n *= int(dim)
    return n


def _metadata_bytes(model: Path, tensors: list[dict[str, Any]]) -> int:
    """The source's header size (file size minus its tensor data), a bound for the output's."""
    from qtapp.core.fit.quants import tensor_bytes

    try:
        data = sum(tensor_bytes(t["src_type"], t["shape"]) for t in tensors)
        return max(model.stat().st_size - data, 0)
    except (KeyError, ValueError, OSError):
        return 0


def _part_prefix(out: Path) -> Path:
    return part_prefix(out)
