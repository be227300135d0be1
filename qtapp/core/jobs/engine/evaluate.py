"""Worker handlers ``evaluate`` (perplexity, KL divergence) and ``speed`` (pp512 / tg128).

``evaluate`` reproduces ``llama-perplexity`` (and ``--kl-divergence``): the text is tokenized
with BOS, cut into chunks of ``ctx`` tokens whose first token becomes BOS, ``n_batch / ctx``
chunks are packed into one decode as separate sequences, and only the second half of each
chunk is scored. One ``Point`` per chunk streams out as soon as it is known, so a cancel (or a
kill) keeps everything measured so far.

``speed`` reproduces ``llama-bench``: a warm-up run, then ``reps`` timed runs of a 512-token
prompt and of 128 single-token generations, each in a fresh context, tokens/s mean and sd; at
each of ``depths`` (default [0]) as ``llama-bench -d`` (see ``bench_speed``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from qtapp.core.app.paths import resources_dir
from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.base_cache import BaseCache
from qtapp.core.evaluate.checks import check_text_bytes
from qtapp.core.evaluate.logprobs import BaseRows, encode_base_rows, kld_rows, nll_rows
from qtapp.core.evaluate.metrics import KldAccumulator, PplAccumulator
from qtapp.core.jobs.engine.bench_speed import run_speed as _speed
from qtapp.core.jobs.engine.dry_load import rss_bytes
from qtapp.core.jobs.engine.llama_session import Aborted, AbortFlag, LlamaSession
from qtapp.core.jobs.events import Cancelled, Event, Point, Progress

log = logging.getLogger(__name__)
Emit = Callable[[Event], None]

DEFAULT_TEXT = "texts/kjv-genesis-exodus.txt"
_BLOCK_ROWS = 32
_BASE_EPS = 0.0  # exact: store every token llama-perplexity's KLD sum uses


def default_text_path() -> Path:
    return resources_dir() / DEFAULT_TEXT


def read_text(path: str | Path | None) -> str:
    """The evaluation text as llama-perplexity reads ``-f``: whole file, one final newline off."""
    p = Path(path) if path else default_text_path()
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
        with p.open("rb") as fh:
            head = fh.read(1 << 20)
    except OSError as exc:
        raise QuantLensError(
            f"Cannot read the evaluation text {p}: {exc.strerror or exc}.",
            "Choose an existing UTF-8 text file.",
        ) from exc
    if head.strip():
        check_text_bytes(head, p.name)
    if text.endswith("\n"):
        text = text[:-1]
    if not text.strip():
        raise QuantLensError(
            f"The evaluation text {p.name} is empty.",
            "Choose a text file with prose in it (at least 2 x context tokens long).",
        )
    return text


def _plan_chunks(tokens: np.ndarray, n_ctx: int, chunks: int | None, name: str) -> int:
    if len(tokens) < 2 * n_ctx:
        raise QuantLensError(
            f"The text tokenizes to only {len(tokens)} tokens; at least {2 * n_ctx} are needed "
            f"with a context of {n_ctx} ({name}).",
            "Use a longer text or a smaller context (--ctx).",
        )
    n_max = len(tokens) // n_ctx
    return n_max if not chunks or chunks < 0 else min(int(chunks), n_max)


def _groups(
    sess: LlamaSession, tokens: np.ndarray, n_ctx: int, n_chunk: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Decode the chunks like perplexity.cpp; yield (first chunk, chunks, scored logits rows).

    The rows are ``n_seq_batch * (n_ctx - n_ctx // 2)`` x ``n_vocab``: a view on llama.cpp's
    buffer when one decode covers the chunk, else a copy.
    """
    n_batch = sess.n_batch
    n_seq = sess.n_seq
    first = n_ctx // 2
    num_batches = (n_ctx + n_batch - 1) // n_batch
    bos = sess.bos
    add_bos = sess.add_bos
    for i in range(0, n_chunk, n_seq):
        start = i * n_ctx
        n_seq_batch = min(n_seq, n_chunk - i)
        sess.clear_memory()
        copies: list[np.ndarray] = []
        rows = None
        for j in range(num_batches):
            batch_start = start + j * n_batch
            batch_size = min(start + n_ctx - batch_start, n_batch)
            toks, poss, seqs, outs = [], [], [], []
            for seq in range(n_seq_batch):
                seq_start = batch_start + seq * n_ctx
                t = tokens[seq_start : seq_start + batch_size].copy()
                if add_bos and j == 0:
                    t[0] = bos
                pos = j * n_batch + np.arange(batch_size, dtype=np.int32)
                toks.append(t)
                poss.append(pos)
                seqs.append(np.full(batch_size, seq, dtype=np.int32))
                outs.append((pos >= first).astype(np.int8))
            out = np.concatenate(outs)
            n_out = sess.decode(
                np.concatenate(toks), np.concatenate(poss), np.concatenate(seqs), out
            )
            if n_out:
                view = sess.logits(n_out)
                if num_batches > 1:
                    copies.append(view.copy())
                else:
                    rows = view
        if num_batches > 1:
            rows = np.concatenate(copies)
        assert rows is not None
        yield i, n_seq_batch, rows


def _map_blocks(pool: ThreadPoolExecutor, fn: Callable[[int, int], Any], n_rows: int) -> list[Any]:
    bounds = [(a, min(a + _BLOCK_ROWS, n_rows)) for a in range(0, n_rows, _BLOCK_ROWS)]
    return list(pool.map(lambda ab: fn(*ab), bounds))


def _encode_block(block: np.ndarray, targets: np.ndarray, a: int, b: int) -> BaseRows:
    return encode_base_rows(block[a:b], targets[a:b])


def _nll_block(block: np.ndarray, targets: np.ndarray, a: int, b: int) -> np.ndarray:
    return nll_rows(block[a:b], targets[a:b])


def _kld_block(
    block: np.ndarray, targets: np.ndarray, base: BaseRows, a: int, b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return kld_rows(block[a:b], targets[a:b], base.rows(a, b))


def _targets(tokens: np.ndarray, chunk: int, n_ctx: int) -> np.ndarray:
    first = n_ctx // 2
    start = chunk * n_ctx + first + 1
    return tokens[start : chunk * n_ctx + n_ctx]


def _session(
    path: str | Path, params: dict[str, Any], abort: AbortFlag, n_seq: int
) -> LlamaSession:
    n_ctx = int(params.get("ctx", 512))
    return LlamaSession(
        path,
        n_ctx=n_seq * n_ctx,
        n_batch=min(int(params.get("batch", 2048)), n_seq * n_ctx),
        n_seq=n_seq,
        threads=params.get("threads"),
        n_gpu_layers=params.get("n_gpu_layers"),
        abort=abort,
        repack=params.get("repack"),
    )


def _compute_base(
    params: dict[str, Any], text: str, abort: AbortFlag, emit: Emit, pool: ThreadPoolExecutor
) -> BaseCache:
    """Make (or resume) the base model's log-prob cache for this text and these settings."""
    n_ctx = int(params.get("ctx", 512))
    n_batch = int(params.get("batch", 2048))
    n_seq = max(1, n_batch // n_ctx)
    base = params["base"]
    asked = int(params.get("chunks") or -1)
    cache = BaseCache.for_run(base, text, n_ctx, n_batch, asked, _BASE_EPS)
    if cache.complete():
        emit(
            Progress(fraction=0.5, message="base model log-probs: cached", detail={"phase": "base"})
        )
        return cache
    with _session(base, params, abort, n_seq) as sess:
        tokens = sess.tokenize(text)
        n_chunk = _plan_chunks(tokens, n_ctx, params.get("chunks"), "base model")
        cache.save_tokens(tokens, sess.n_vocab, n_chunk)
        per = n_ctx - n_ctx // 2
        t0 = time.monotonic()
        for i, n_seq_batch, rows in _groups(sess, tokens, n_ctx, n_chunk):
            for s in range(n_seq_batch):
                if cache.has_chunk(i + s):
                    continue
                block = rows[s * per : s * per + per - 1]
                tg = _targets(tokens, i + s, n_ctx)
                parts = _map_blocks(pool, partial(_encode_block, block, tg), len(tg))
                cache.save_chunk(i + s, BaseRows.concat(parts))
            done = min(i + n_seq_batch, n_chunk)
            eta = (time.monotonic() - t0) / done * (n_chunk - done)
            emit(
                Progress(
                    fraction=0.5 * done / n_chunk,
                    message=f"base model log-probs: chunk {done}/{n_chunk}",
                    detail={"phase": "base", "chunk": done, "chunks": n_chunk, "eta_s": eta},
                )
            )
            abort.check()
    return cache


def _eval_sizes(params: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """The params with the batch cut to whole contexts (as llama-perplexity), ctx and batch."""
    n_ctx = int(params.get("ctx", 512))
    n_batch = int(params.get("batch", 2048))
    if n_ctx < 8:
        raise QuantLensError(f"Context {n_ctx} is too small.", "Use a context of at least 8.")
    if n_batch >= n_ctx and n_batch % n_ctx:
        n_batch = n_ctx * (n_batch // n_ctx)  # llama-perplexity asserts the same
        params = {**params, "batch": n_batch}
    return params, n_ctx, n_batch


def _model_tokens(
    sess: LlamaSession, cache: BaseCache | None, text: str, params: dict[str, Any], n_ctx: int
) -> tuple[np.ndarray, int]:
    """The tokens to score (the base cache's when comparing) and how many chunks to score."""
    tokens = cache.tokens() if cache is not None else None
    if tokens is None:
        tokens = sess.tokenize(text)
    n_chunk = _plan_chunks(tokens, n_ctx, params.get("chunks"), Path(params["model"]).name)
    if cache is not None:
        n_chunk = min(n_chunk, cache.chunks_total)
    if cache is not None and cache.meta.get("n_vocab") not in (None, sess.n_vocab):
        raise QuantLensError(
            "The base model has a different vocabulary than this model.",
            "KL divergence needs the same tokenizer: choose the model this one was made from.",
        )
    return tokens, n_chunk


@dataclass
class _Scorer:
    """Scores the model's chunks: PPL, and KLD against the base model's cache when comparing.

    Every chunk's ``Point``s are emitted as soon as it is scored; ``dump`` (tests only) collects
    the scored logits.
    """

    pool: ThreadPoolExecutor
    emit: Emit
    ppl: PplAccumulator
    kld: KldAccumulator | None
    cache: BaseCache | None
    dump: list[np.ndarray] | None

    def all_chunks(
        self,
        sess: LlamaSession,
        tokens: np.ndarray,
        n_ctx: int,
        n_chunk: int,
        result: dict[str, Any],
    ) -> float:
        """Decode and score every chunk; return the seconds it took.

        ``result["chunks_done"]`` follows each chunk, so a cancel keeps what was measured.
        """
        ppl = self.ppl
        lo = 0.5 if self.kld is not None else 0.0
        per = n_ctx - n_ctx // 2
        t0 = time.monotonic()
        for i, n_seq_batch, rows in _groups(sess, tokens, n_ctx, n_chunk):
            for s in range(n_seq_batch):
                c = i + s
                block = rows[s * per : s * per + per - 1]
                tg = _targets(tokens, c, n_ctx)
                if self.dump is not None:
                    self.dump.append(np.array(block))
                self.chunk(c, block, tg, sess.text_bytes(tg))
                result["chunks_done"] = c + 1
            done = min(i + n_seq_batch, n_chunk)
            eta = (time.monotonic() - t0) / done * (n_chunk - done)
            self.emit(
                Progress(
                    fraction=lo + (1 - lo) * done / n_chunk,
                    message=f"chunk {done}/{n_chunk}: PPL {ppl.ppl:.4f} ± {ppl.ppl_err:.4f}",
                    detail={"phase": "eval", "chunk": done, "chunks": n_chunk, "eta_s": eta},
                )
            )
        return time.monotonic() - t0

    def chunk(self, c: int, block: np.ndarray, tg: np.ndarray, text_bytes: int = 0) -> None:
        """Score chunk ``c`` (its logits rows, target tokens and their text's bytes) and emit
        its points."""
        ppl = self.ppl
        extra: dict[str, Any] = {"chunk": c + 1}
        if self.kld is None:
            nll = np.concatenate(_map_blocks(self.pool, partial(_nll_block, block, tg), len(tg)))
            ppl.add(nll, text_bytes)
            extra["chunk_ppl"] = float(np.exp(nll.mean()))
        else:
            self._kld_chunk(c, block, tg, self.kld, extra, text_bytes)
        self.emit(Point("ppl", x=ppl.count, y=ppl.ppl, err=ppl.ppl_err, extra=extra))

    def _kld_chunk(
        self,
        c: int,
        block: np.ndarray,
        tg: np.ndarray,
        kld: KldAccumulator,
        extra: dict[str, Any],
        text_bytes: int,
    ) -> None:
        assert self.cache is not None  # evaluate() makes the base cache whenever it counts KLD
        ppl = self.ppl
        base = self.cache.load_chunk(c)
        parts = _map_blocks(self.pool, partial(_kld_block, block, tg, base), len(tg))
        nll32, nll_b, kl, same = (np.concatenate(p) for p in zip(*parts, strict=True))
        ppl.add(nll32.astype(np.float64), text_bytes)
        kld.add(nll32, nll_b, kl, same)
        run = kld.running()
        extra.update(chunk_ppl=float(np.exp(nll32.astype(np.float64).mean())))
        self.emit(Point("kld", x=c + 1, y=float(kl.mean()), err=_sem(kl), extra=extra))
        self.emit(Point("kld_running", x=ppl.count, y=run["kld_mean"], err=run["kld_mean_err"]))
        self.emit(Point("same_top", x=c + 1, y=100.0 * float(np.mean(same))))
        self.emit(Point("ppl_ratio", x=ppl.count, y=float(np.exp(run["ln_ppl_ratio"]))))


def evaluate(params: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Perplexity of ``params["model"]`` (and KLD against ``params["base"]`` when given).

    Params: model, base, text (path; default text when absent), ctx (512), batch (2048),
    chunks (all), threads, n_gpu_layers, speed (bool), reps (5), depths (speed at these context
    depths, default [0]), dump_logits (path, tests only).
    """
    abort = AbortFlag()
    abort.install()
    text = read_text(params.get("text"))
    params, n_ctx, n_batch = _eval_sizes(params)
    n_seq = max(1, n_batch // n_ctx)
    ppl = PplAccumulator()
    kld = KldAccumulator() if params.get("base") else None
    result: dict[str, Any] = {"model": str(params["model"]), "ctx": n_ctx, "chunks_done": 0}
    dump: list[np.ndarray] = []
    threads = int(params.get("threads") or 0) or None
    pool = ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 2)
    try:
        cache = None
        if kld is not None:
            emit(Progress(fraction=0.0, message="base model log-probs", detail={"phase": "base"}))
            cache = _compute_base(params, text, abort, emit, pool)
            result["base"] = str(params["base"])
        scorer = _Scorer(pool, emit, ppl, kld, cache, dump if params.get("dump_logits") else None)
        # the worker's resident memory without the model (Python, numpy, the library), and
        # with it once every chunk is scored (llama.cpp's buffers stay resident until the end):
        # the difference is what the plan predicts for the host
        result["worker_rss_base_bytes"] = rss_bytes()
        with _session(params["model"], params, abort, n_seq) as sess:
            tokens, n_chunk = _model_tokens(sess, cache, text, params, n_ctx)
            result.update(tokens=0, n_chunks=n_chunk, n_vocab=sess.n_vocab, threads=sess.threads)
            result["eval_s"] = scorer.all_chunks(sess, tokens, n_ctx, n_chunk, result)
            result["worker_rss_model_bytes"] = rss_bytes()
            result.update(_summary(ppl, kld))
            if params.get("dump_logits"):
                np.savez(params["dump_logits"], logits=np.concatenate(dump), tokens=tokens)
            if params.get("speed"):
                result.update(_speed(sess, params, emit))
        return result
    except Aborted:
        result.update(_summary(ppl, kld), partial=True)
        emit(Cancelled(partial=result))
        sys.stdout.flush()
        raise SystemExit(0) from None
    finally:
        pool.shutdown(wait=False)


def _sem(values: np.ndarray) -> float:
    n = len(values)
    return float(np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else 0.0


def _summary(ppl: PplAccumulator, kld: KldAccumulator | None) -> dict[str, Any]:
    out: dict[str, Any] = {"tokens": ppl.count}
    if ppl.count:
        out.update(ppl=ppl.ppl, ppl_err=ppl.ppl_err)
    if ppl.text_bytes:
        out.update(bpb=ppl.bpb, bpb_err=ppl.bpb_err, text_bytes=ppl.text_bytes)
    if kld is not None and kld.count:
        s = kld.summary()
        out.update({k: v for k, v in s.items() if k.startswith(("kld", "dp_", "same_top", "ppl_"))})
        out["ppl"], out["ppl_err"] = s["ppl"], s["ppl_err"]
    return out


def speed(params: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """llama-bench's pp512 and tg128 for ``params["model"]`` (reps, threads, n_gpu_layers)."""
    abort = AbortFlag()
    abort.install()
    try:
        with LlamaSession(
            params["model"],
            n_ctx=max(16, int(params.get("n_prompt", 512)), int(params.get("n_gen", 128))),
            threads=params.get("threads"),
            n_gpu_layers=params.get("n_gpu_layers"),
            abort=abort,
            repack=params.get("repack"),
            abort_in_decode=False,
        ) as sess:
            result = {"model": str(params["model"])}
            result.update(_speed(sess, params, emit))
            return result
    except Aborted:
        emit(Cancelled(partial={"model": str(params["model"]), "partial": True}))
        sys.stdout.flush()
        raise SystemExit(0) from None
