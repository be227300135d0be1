"""Worker handler ``imatrix``: what ``llama-imatrix`` computes, through llama.cpp's eval callback.

The pinned ``tools/imatrix/imatrix.cpp`` (``IMatrixCollector::collect_imatrix``), step by step:

* the scheduler asks about every graph node (``ask``); yes for every ``MUL_MAT_ID`` and for a
  ``MUL_MAT`` whose activations (``src[1]``) are F32 with at least 16 rows and whose weight
  (``src[0]``, name without a backend's ``CUDA0#...#0`` decoration) starts with ``blk.``;
* for each such node it adds the squares of the activations per input column into float sums,
  one row of sums per matrix (``MUL_MAT_ID``: per expert, routed by the ids in ``src[2]``, each
  expert with its own count; dense: one count, rows / matrices);
* activations not in host memory (a GPU) are copied with ``ggml_backend_tensor_get``.

The chunk loop is ``compute_imatrix``: the whole text tokenized with BOS (special tokens as
text), at least 2 x ctx tokens, ``chunks`` chunks of ctx tokens (all when absent), each chunk's
first token BOS, ``n_batch / ctx`` chunks per decode as separate sequences, logits for every
token (so the last layer sees every row). The result is written like ``save_imatrix``
(:func:`qtapp.core.quantize.imatrix.imatrix_gguf_bytes`) into ``<out>.part`` and renamed.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from qtapp.core.errors import QuantLensError
from qtapp.core.jobs.engine import lifeline
from qtapp.core.jobs.engine.imatrix_collect import CollectingSession, Collector, Ggml
from qtapp.core.jobs.engine.llama_session import Aborted, AbortFlag, LlamaSession
from qtapp.core.jobs.events import Cancelled, Progress
from qtapp.core.quantize.imatrix import imatrix_gguf_bytes

log = logging.getLogger(__name__)


# -- the text -----------------------------------------------------------------------------------
def read_calibration_text(path: str | Path) -> str:
    """The text as llama-imatrix reads ``-f``: the whole file, one final newline off."""
    p = Path(path)
    if p.is_dir():
        raise QuantLensError(
            f"The calibration text {p} is a folder.", "Give the path of a UTF-8 text file."
        )
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise QuantLensError(
            f"Cannot read the calibration text {p}: {exc.strerror or exc}.",
            "Choose an existing UTF-8 text file.",
        ) from exc
    head = raw[: 1 << 20]
    bad = head.decode("utf-8", errors="replace").count("\ufffd")
    if b"\x00" in head or bad > 0.01 * max(len(head), 1):
        raise QuantLensError(
            f"The calibration text {p.name} is not UTF-8 text (it looks binary).",
            "Choose a plain UTF-8 text file.",
        )
    text = raw.decode("utf-8", errors="replace")
    if text.endswith("\n"):
        text = text[:-1]
    if not text.strip():
        raise QuantLensError(
            f"The calibration text {p.name} is empty.",
            "Choose a text file with prose in it, at least 2 x context tokens long "
            "(the bundled kjv-genesis-exodus.txt is about 90,000 tokens).",
        )
    return text


def plan_chunks(n_tokens: int, n_ctx: int, chunks: int | None, name: str) -> int:
    if n_tokens < 2 * n_ctx:
        raise QuantLensError(
            f"The calibration text {name} tokenizes to only {n_tokens} tokens; llama-imatrix "
            f"needs at least {2 * n_ctx} (2 x the context of {n_ctx}).",
            "Use a longer text or a smaller context (--ctx).",
        )
    n_max = n_tokens // n_ctx
    return n_max if not chunks or chunks < 0 else min(int(chunks), n_max)


# -- the handler --------------------------------------------------------------------------------
def _check_out(out: Path) -> None:
    folder = out.parent
    if not folder.is_dir():
        raise QuantLensError(
            f"The output folder {folder} does not exist.", "Create it or choose another folder."
        )
    if out.is_dir():
        raise QuantLensError(f"The output {out} is a folder.", "Give a file name ending in .gguf.")


def _check_model(model: Path) -> None:
    if not model.is_file():
        raise QuantLensError(f"The model {model} does not exist.", "Pick an existing .gguf file.")
    try:
        with model.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise QuantLensError(
            f"Cannot read the model {model.name}: {exc.strerror or exc}.",
            "Check the file's permissions.",
        ) from exc
    if magic != b"GGUF":
        raise QuantLensError(
            f"{model.name} is not a GGUF model file.",
            "Pick a .gguf file (convert other formats with llama.cpp first).",
        )


def part_path(out: Path) -> Path:
    return out.with_name(out.name + ".part")


def _write(out: Path, data: bytes) -> None:
    part = part_path(out)
    try:
        with part.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, out)
    except OSError as exc:
        part.unlink(missing_ok=True)
        full = exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
        raise QuantLensError(
            f"Could not write the importance matrix {out.name}: "
            + ("the disk is full." if full else f"{exc.strerror or exc}."),
            (
                f"Free {len(data) / 2**20:.1f} MiB in {out.parent} or choose another output."
                if full
                else "Choose another output folder."
            ),
        ) from exc


def _limit_file_size(limit: int) -> None:
    """Test-only: writes past ``limit`` bytes fail like a full disk (EFBIG, not SIGXFSZ)."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _sizes(params: dict[str, Any]) -> tuple[int, int, int]:
    """ctx, sequences per decode and n_batch, as llama-imatrix's main() derives them."""
    n_ctx = int(params.get("ctx") or 512)
    if n_ctx < 8:
        raise QuantLensError(f"Context {n_ctx} is too small.", "Use a context of at least 8.")
    batch = int(params.get("batch") or 2048)
    n_seq = max(1, batch // n_ctx)
    n_batch = min(batch, n_seq * n_ctx)
    if not (n_batch < n_ctx or n_batch % n_ctx == 0):
        n_batch = n_ctx * (n_batch // n_ctx)
    return n_ctx, n_seq, n_batch


class _Reporter:
    """Progress with an ETA, from the rows the first collected matrix has seen (every ubatch)."""

    def __init__(self, emit: Any, n_chunk: int, n_ctx: int) -> None:
        self.emit = emit
        self.n_chunk = n_chunk
        self.total = n_chunk * n_ctx
        self.n_ctx = n_ctx
        self.t0 = time.monotonic()
        self.last = -1.0

    def rows(self, seen: int) -> None:
        fraction = min(1.0, seen / self.total)
        now = time.monotonic()
        if fraction < 1.0 and now - self.last < 0.25:
            return
        self.last = now
        elapsed = now - self.t0
        eta = elapsed / fraction * (1.0 - fraction) if fraction > 0 else None
        done = min(self.n_chunk, seen // self.n_ctx)
        self.emit(
            Progress(
                fraction=fraction,
                message=f"{done}/{self.n_chunk} chunks",
                detail={
                    "phase": "imatrix",
                    "chunk": done,
                    "chunks": self.n_chunk,
                    "elapsed": elapsed,
                    "eta": eta,
                },
            )
        )


def _collect_all(
    params: dict[str, Any], text: str, collector: Collector, abort: AbortFlag, emit: Any
) -> tuple[int, float, int]:
    """Load, tokenize and decode every chunk; returns (chunks, seconds computing, threads)."""
    n_ctx, n_seq, n_batch = _sizes(params)
    with CollectingSession(
        Path(params["model"]),
        n_ctx=n_seq * n_ctx,
        n_batch=n_batch,
        n_seq=n_seq,
        threads=params.get("threads"),
        n_gpu_layers=params.get("n_gpu_layers"),
        abort=abort,
        callback=collector.callback,
    ) as sess:
        tokens = sess.tokenize(text)
        n_chunk = plan_chunks(len(tokens), n_ctx, params.get("chunks"), Path(params["text"]).name)
        reporter = _Reporter(emit, n_chunk, n_ctx)
        reporter.rows(0)
        collector.on_rows = reporter.rows
        for _done in _run_chunks(sess, tokens, n_ctx, n_chunk, collector):
            abort.check()
        collector.on_rows = None
        reporter.rows(reporter.total)
        return n_chunk, time.monotonic() - reporter.t0, sess.threads


def imatrix(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """params: model, text (path), out (path), ctx (512), batch (2048), chunks (all), threads,
    n_gpu_layers, dataset (the name stored in the file; the text path by default);
    ``_force_copy`` and ``_fsize_limit`` (tests only)."""
    abort = AbortFlag()
    abort.install()
    model, out, text_path = Path(params["model"]), Path(params["out"]), Path(params["text"])
    n_ctx, _n_seq, _n_batch = _sizes(params)
    _check_out(out)
    _check_model(model)
    text = read_calibration_text(text_path)
    from qtapp.core.jobs.engine.llama_lib import llama_cpp

    collector = Collector(Ggml(llama_cpp), force_copy=bool(params.get("_force_copy")))
    part = part_path(out)
    orphan_cleanup = lifeline.add_cleanup(lambda: part.unlink(missing_ok=True))
    emit(Progress(fraction=0.0, message="loading the model", detail={"phase": "load"}))
    t_start = time.monotonic()
    dataset = str(params.get("dataset") or text_path)
    try:
        n_chunk, compute_s, threads = _collect_all(params, text, collector, abort, emit)
        if not collector.stats:
            raise QuantLensError(
                f"No weight of {model.name} was multiplied by activations (no blk.* matrices).",
                "This architecture's graph is not one llama-imatrix collects from either.",
            )
        data = imatrix_gguf_bytes(
            {k: s for k, (s, _c) in collector.stats.items()},
            {k: c for k, (_s, c) in collector.stats.items()},
            [dataset],
            collector.chunk_count(n_ctx),
            n_ctx,
        )
        if params.get("_fsize_limit"):
            _limit_file_size(int(params["_fsize_limit"]))
        _write(out, data)
    except Aborted:
        part.unlink(missing_ok=True)
        emit(Cancelled(partial={"model": str(model)}))
        sys.stdout.flush()
        raise SystemExit(0) from None
    finally:
        lifeline.remove_cleanup(orphan_cleanup)
    return {
        "path": str(out),
        "model": str(model),
        "text": str(text_path),
        "dataset": dataset,
        "ctx": n_ctx,
        "chunks": n_chunk,
        "chunk_count": collector.chunk_count(n_ctx),
        "tokens": n_chunk * n_ctx,
        "entries": len(collector.stats),
        "experts_without_data": sum(int((c == 0).sum()) for _s, c in collector.stats.values()),
        "bytes": out.stat().st_size,
        "seconds": time.monotonic() - t_start,
        "compute_seconds": compute_s,
        "threads": threads,
    }


def _raise_collector_error(collector: Collector) -> None:
    err = collector.error
    if err is None:
        return
    if isinstance(err, QuantLensError):
        raise err
    raise QuantLensError(
        f"Collecting activations failed: {type(err).__name__}: {err}", "See the log for details."
    ) from err


def _run_chunks(
    sess: LlamaSession, tokens: np.ndarray, n_ctx: int, n_chunk: int, collector: Collector
) -> Any:
    """Decode the chunks as compute_imatrix does; yield the chunks done after each group."""
    n_batch = sess.n_batch
    n_seq = sess.n_seq
    num_batches = (n_ctx + n_batch - 1) // n_batch
    bos = sess.bos
    add_bos = sess.add_bos
    for i in range(0, n_chunk, n_seq):
        start = i * n_ctx
        n_seq_batch = min(n_seq, n_chunk - i)
        sess.clear_memory()
        for j in range(num_batches):
            batch_start = start + j * n_batch
            batch_size = min(start + n_ctx - batch_start, n_batch)
            toks, poss, seqs = [], [], []
            for seq in range(n_seq_batch):
                seq_start = batch_start + seq * n_ctx
                t = tokens[seq_start : seq_start + batch_size].copy()
                if add_bos and j == 0:
                    t[0] = bos
                toks.append(t)
                poss.append(j * n_batch + np.arange(batch_size, dtype=np.int32))
                seqs.append(np.full(batch_size, seq, dtype=np.int32))
            all_tokens = np.concatenate(toks)
            try:
                sess.decode(
                    all_tokens,
                    np.concatenate(poss),
                    np.concatenate(seqs),
                    np.ones(len(all_tokens), dtype=np.int8),
                )
            finally:
                if collector.error is not None:
                    err = collector.error
                    raise (
                        err
                        if isinstance(err, QuantLensError)
                        else QuantLensError(
                            f"Collecting activations failed: {type(err).__name__}: {err}",
                            "See the log for details.",
                        )
                    )
        yield min(i + n_seq_batch, n_chunk)
