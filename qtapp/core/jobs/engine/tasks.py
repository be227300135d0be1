"""Worker handler ``tasks``: task accuracy as ``llama-perplexity`` computes it (HellaSwag,
Winogrande, multiple choice).

Read from the pinned ``tools/perplexity/perplexity.cpp`` (``hellaswag_score``): the same tasks
in the same order (:func:`qtapp.core.evaluate.tasks.hellaswag_tasks`), each tokenized as
``context + " " + ending`` with BOS, the tokens the four endings share decoded once for four
sequences of a unified KV cache (``n_parallel`` 4, context ``4 x ctx``), the first ending token
scored from the shared prefix's last logits (a softmax summed in double), the others from their
own logits, each ending's log-probabilities averaged over its tokens, the best average the
answer. Each scored task streams a point with the running accuracy and its 95% Wilson interval;
a cancel keeps the tasks scored so far.

Winogrande (``winogrande_score``) and multiple choice (``multiple_choice_score``) pack several
tasks into one decode, as many as fit the context and the 4 sequences (Winogrande: 2 tasks of 2
sequences, multiple choice: 4 answers' worth), memory cleared before each decode: the packing is
reproduced because the logits can depend on the batch's composition. Winogrande scores each
choice by the mean log-probability of the tokens after it (when both choices leave more than 3
tokens after the shared prefix) or of its own tokens and the rest, in float; multiple choice
by the mean log-probability of each answer's tokens, in float, the largest mean (first on ties)
the answer.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.tasks import (
    HsTask,
    McTask,
    WgTask,
    detect_task_kind,
    hellaswag_tasks,
    mc_tasks,
    read_hellaswag,
    read_multiple_choice,
    read_winogrande,
    wilson,
    winogrande_tasks,
)
from qtapp.core.jobs.engine.llama_session import Aborted, AbortFlag, LlamaSession
from qtapp.core.jobs.events import Cancelled, Point, Progress

N_PARALLEL = 4  # llama-perplexity: n_parallel = max(4, n_parallel) for task scoring
K_MIN_TRAILING_CTX = 3  # winogrande_score: score only the tokens after the choice if both
# choices leave more than this many tokens after the shared prefix


_BLOCK = 16  # rows of logits per vectorized log-softmax (16 x 262k floats: 16 MiB)
_CORES = os.cpu_count() or 1


def _logprobs(rows: np.ndarray, targets: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """``compute_logprobs``, row by row in float: each target's logit minus the row's maximum
    minus the log of the sum of the exponentials. The sum runs left to right in float as the C
    loop does (``cumsum``: a pairwise sum is more exact but shifts scores by ~3e-4); numpy's
    float ``exp`` is within an ulp of glibc's ``expf`` (scores agree to ~1e-7). Blocks of rows
    run on the cores in parallel (numpy releases the GIL), as llama.cpp's workers do.
    ``index``: the row of each target (default: row i for target i)."""
    out = np.empty(len(targets), dtype=np.float32)

    def block(a: int) -> None:
        rows_a = rows[a : a + _BLOCK] if index is None else rows[index[a : a + _BLOCK]]
        m = rows_a.max(axis=1)
        e = np.exp(rows_a - m[:, None])
        s = np.cumsum(e, axis=1, dtype=np.float32)[:, -1]
        picked = rows_a[np.arange(len(rows_a)), targets[a : a + _BLOCK]]
        out[a : a + _BLOCK] = (picked - m) - np.log(s.astype(np.float64)).astype(np.float32)

    starts = range(0, len(targets), _BLOCK)
    if len(starts) < 2 or _CORES < 2:
        for a in starts:
            block(a)
        return out
    with ThreadPoolExecutor(max_workers=min(_CORES, len(starts))) as pool:
        list(pool.map(block, starts))
    return out


def _first_logprob(row: np.ndarray, tokens: list[int]) -> list[float]:
    """``softmax`` then ``std::log``: exponentials in float, their sum in double, each
    probability divided in double and stored as float, its log a float (``std::log(float)``)."""
    e = np.exp(row - row.max(), dtype=np.float32)
    total = float(e.sum(dtype=np.float64))
    out = []
    for t in tokens:
        prob = float(np.float32(float(e[t]) / total))
        out.append(float(np.float32(math.log(prob))) if prob > 0 else -math.inf)
    return out


def score_task(sess: LlamaSession, task: HsTask) -> tuple[int, list[float]]:
    """(the ending the model picks, the four endings' mean log-probabilities)."""
    seqs = [sess.tokenize(f"{task.context} {e}").tolist() for e in task.endings]
    prefix = 0
    for k in range(min(len(s) for s in seqs)):
        if not all(s[k] == seqs[0][k] for s in seqs):
            break
        prefix += 1
    required = prefix + sum(len(s) - prefix for s in seqs)
    if required > sess.n_ctx:
        raise QuantLensError(
            f"Task {task.index + 1} needs {required} tokens, more than the context "
            f"({sess.n_ctx // N_PARALLEL} per ending, {sess.n_ctx} in all).",
            f"Use a larger --ctx (at least {-(-required // N_PARALLEL)}).",
        )
    _require_distinct(task.index + 1, seqs, prefix, "ending")
    tokens: list[int] = []
    pos: list[int] = []
    owners: list[tuple[int, ...]] = []
    outputs: list[bool] = []
    for i in range(prefix):
        tokens.append(seqs[0][i])
        pos.append(i)
        owners.append(tuple(range(N_PARALLEL)))
        outputs.append(i == prefix - 1)
    for s, seq in enumerate(seqs):
        for i in range(prefix, len(seq)):
            tokens.append(seq[i])
            pos.append(i)
            owners.append((s,))
            outputs.append(i < len(seq) - 1)
    rows = _decode(sess, tokens, pos, owners, outputs)
    first = _first_logprob(rows[0], [s[prefix] for s in seqs])
    targets = np.array([t for seq in seqs for t in seq[prefix + 1 :]], dtype=np.int64)
    later = _logprobs(rows[1:], targets)
    scores = []
    r = 0
    for s, seq in enumerate(seqs):
        n = len(seq) - 1 - prefix
        total = first[s]
        for v in later[r : r + n]:  # summed in double, one by one, as llama-perplexity does
            total += float(v)
        r += n
        scores.append(total / (n + 1))
    best = 0
    for s in range(1, 4):
        if scores[s] > scores[best]:
            best = s
    return best, scores


def _decode(
    sess: LlamaSession,
    tokens: list[int],
    pos: list[int],
    owners: list[tuple[int, ...]],
    outputs: list[bool],
) -> np.ndarray:
    """``decode_helper``: the batch in pieces of ``n_batch``, their logits rows together."""
    sess.clear_memory()
    if len(tokens) <= sess.n_batch:  # one decode: read its logits in place
        return sess.logits(sess.decode_shared(tokens, pos, owners, outputs))
    parts = []
    for a in range(0, len(tokens), sess.n_batch):
        b = min(a + sess.n_batch, len(tokens))
        n = sess.decode_shared(tokens[a:b], pos[a:b], owners[a:b], outputs[a:b])
        if n:
            parts.append(np.array(sess.logits(n)))
    return np.concatenate(parts)


# -- Winogrande and multiple choice: several tasks per decode ----------------------------------
_SIZE_T = 1 << 64


def _tokenize(sess: LlamaSession, data: bytes) -> list[int]:
    """``common_tokenize(ctx, text, true)`` of bytes (the bytes llama.cpp split and joined)."""
    L = sess.L
    n_max = len(data) + 16
    buf = (L.llama_token * n_max)()
    n = int(L.llama_tokenize(sess.vocab, data, len(data), buf, n_max, True, False))
    if n < 0:
        buf = (L.llama_token * -n)()
        n = int(L.llama_tokenize(sess.vocab, data, len(data), buf, -n, True, False))
    return list(buf[:n])


@dataclass
class _Prepared:
    """One task tokenized: its sequences, the tokens they share, what the packing needs."""

    number: int  # 1-based place in scoring order, for messages
    seqs: list[list[int]]
    prefix: int
    required: int
    n_base: tuple[int, ...] = ()  # Winogrande: tokens of first + choice, per choice
    i_logits: int = 0  # the task's first logits row in its batch


def _common_prefix(seqs: list[list[int]]) -> int:
    n = 0
    for k in range(min(len(s) for s in seqs)):
        if any(s[k] != seqs[0][k] for s in seqs):
            break
        n += 1
    return n


def _require_distinct(number: int, seqs: list[list[int]], prefix: int, what: str) -> None:
    """Every sequence must have a token after the shared prefix: the first one is scored from
    the prefix's last logits (llama-perplexity reads past the end otherwise)."""
    if any(len(q) == prefix for q in seqs):
        raise QuantLensError(
            f"Task {number} of the file: one of its {what}s adds no token after the tokens "
            "they all share (it is empty, or the same text), so it cannot be scored.",
            f"Fix or remove that task; every {what} must differ.",
        )


def _prepare(number: int, seqs: list[list[int]], n_ctx: int) -> _Prepared:
    prefix = _common_prefix(seqs)
    required = prefix + sum(len(s) - prefix for s in seqs)
    if required > n_ctx:
        raise QuantLensError(
            f"Task {number} needs {required} tokens, more than the context "
            f"({n_ctx // N_PARALLEL} per sequence, {n_ctx} in all).",
            f"Use a larger --ctx (at least {-(-required // N_PARALLEL)}).",
        )
    return _Prepared(number, seqs, prefix, required)


def _packed(
    sess: LlamaSession, prepared: list[_Prepared], last_outputs: bool
) -> Iterator[tuple[list[_Prepared], np.ndarray]]:
    """The batches ``winogrande_score`` / ``multiple_choice_score`` decode: tasks added while
    ``n_cur + required_tokens <= n_ctx`` and their sequences fit the 4, each task's shared
    prefix once for all its sequences (logits only for its last token), then each sequence's
    own tokens (logits for all of them, or all but the last when ``last_outputs`` is False).
    Yields each batch's tasks (``i_logits`` set) and its logits rows."""
    i0 = 0
    while i0 < len(prepared):
        tokens: list[int] = []
        pos: list[int] = []
        owners: list[tuple[int, ...]] = []
        outputs: list[bool] = []
        n_cur = s0 = i_logits = 0
        i1 = i0
        while n_cur + prepared[i1].required <= sess.n_ctx:
            task = prepared[i1]
            if s0 + len(task.seqs) > N_PARALLEL:
                break
            for i in range(task.prefix):
                tokens.append(task.seqs[0][i])
                pos.append(i)
                owners.append(tuple(range(s0, s0 + len(task.seqs))))
                outputs.append(False)
            if not outputs:  # no shared token, first in the batch: llama.cpp's index is -1
                raise QuantLensError(
                    f"Task {task.number}'s sequences share no token (not even BOS).",
                    "llama-perplexity cannot score such a task either; use a model that adds "
                    "a BOS token.",
                )
            outputs[-1] = True  # batch.set_output(batch.size() - 1, true)
            n_logits = 1
            for s, seq in enumerate(task.seqs):
                for i in range(task.prefix, len(seq)):
                    out = last_outputs or i < len(seq) - 1
                    tokens.append(seq[i])
                    pos.append(i)
                    owners.append((s0 + s,))
                    outputs.append(out)
                    n_logits += out
            s0 += len(task.seqs)
            task.i_logits = i_logits
            i_logits += n_logits
            n_cur += task.required
            i1 += 1
            if i1 == len(prepared):
                break
        if i1 == i0:  # cannot happen: _prepare and the answer count were checked
            raise QuantLensError(f"Task {prepared[i0].number} does not fit.", "Use a larger --ctx.")
        yield prepared[i0:i1], _decode(sess, tokens, pos, owners, outputs)
        i0 = i1


def _pair_logprobs(rows: np.ndarray, pairs: list[tuple[int, int]], number: int) -> np.ndarray:
    """``compute_logprobs`` of (row, token) pairs of one batch."""
    if not pairs:
        return np.empty(0, dtype=np.float32)
    idx = np.array([r for r, _ in pairs], dtype=np.int64)
    if idx.min() < 0 or idx.max() >= len(rows):
        raise QuantLensError(
            f"Task {number}: llama.cpp's logits index points outside the batch here.",
            "Its tokenization of the choices is unusual; llama-perplexity reads stray memory.",
        )
    return _logprobs(rows, np.array([t for _, t in pairs], dtype=np.int64), idx)


def _wg_spans(task: _Prepared) -> list[tuple[int, int, int]]:
    """Per choice: (first logits row in the task, first token j, end of j) of the tokens
    ``winogrande_score`` scores, with its size_t arithmetic."""
    l0, l1 = len(task.seqs[0]), len(task.seqs[1])
    cp = task.prefix
    skip_choice = l0 - cp > K_MIN_TRAILING_CTX and l1 - cp > K_MIN_TRAILING_CTX
    spans = []
    for s, length in enumerate((l0, l1)):
        n_base = task.n_base[s] if skip_choice else cp
        last = 1 if (length - n_base) % _SIZE_T > 1 else 0
        # FIXME in llama.cpp, reproduced: without skip_choice (n_base2 == common_prefix) the
        # first token of the 2nd choice is scored from the last logits of the 1st choice's
        # sequence, not from the shared prefix's
        li = n_base - cp if s == 0 else l0 - cp + n_base - cp
        spans.append((li, (n_base - 1) % _SIZE_T, (length - 1 - last) % _SIZE_T))
    return spans


def _wg_count(length: int, n_base: int) -> np.float32:
    """The divisor ``seq_tokens.size() - n_base - last`` as a size_t made float."""
    last = 1 if (length - n_base) % _SIZE_T > 1 else 0
    count: np.float32 = np.float32((length - n_base - last) % _SIZE_T)
    return count


def score_hellaswag(
    sess: LlamaSession, chosen: list[HsTask]
) -> Iterator[tuple[bool, int, list[float]]]:
    """(right, ending picked, the four scores) per task, in order: one decode per task."""
    for task in chosen:
        best, scores = score_task(sess, task)
        yield best == task.gold, best, scores


def score_winogrande(
    sess: LlamaSession, chosen: list[WgTask]
) -> Iterator[tuple[bool, int, list[float]]]:
    """(right, choice picked (1 or 2), the two scores) per task, in order, as
    ``winogrande_score`` computes them."""
    prepared = []
    for k, task in enumerate(chosen):
        seqs = [_tokenize(sess, task.first + c + task.second) for c in task.choices]
        p = _prepare(k + 1, seqs, sess.n_ctx)
        # no _require_distinct here: winogrande_score never reads past a sequence's end (a
        # choice with no token after the shared prefix scores an empty sum, 0/0 = nan, and
        # nan > x is false: choice 2), so such a task is scored as llama-perplexity scores it
        p.n_base = tuple(len(_tokenize(sess, task.first + c)) for c in task.choices)
        prepared.append(p)
    for batch, rows in _packed(sess, prepared, last_outputs=True):
        pairs: list[tuple[int, int]] = []
        for p in batch:
            for s, (li, j0, j1) in enumerate(_wg_spans(p)):
                for j in range(j0, j1):
                    pairs.append((p.i_logits + li, p.seqs[s][j + 1]))
                    li += 1
        results = _pair_logprobs(rows, pairs, batch[0].number)
        ir = 0
        for p in batch:
            scores = []
            skip_choice = all(len(q) - p.prefix > K_MIN_TRAILING_CTX for q in p.seqs)
            for s, (_li, j0, j1) in enumerate(_wg_spans(p)):
                score = np.float32(0)
                for _ in range(j0, j1):
                    score = np.float32(score + results[ir])  # summed in float
                    ir += 1
                n_base = p.n_base[s] if skip_choice else p.prefix
                with np.errstate(divide="ignore", invalid="ignore"):
                    score = np.float32(score / _wg_count(len(p.seqs[s]), n_base))
                scores.append(float(score))
            pick = 1 if scores[0] > scores[1] else 2
            yield pick == chosen[p.number - 1].answer, pick, scores


def score_mc(sess: LlamaSession, chosen: list[McTask]) -> Iterator[tuple[bool, int, list[float]]]:
    """(right, answer picked (0-based), the answers' mean log-probabilities) per task, in
    order, as ``multiple_choice_score`` computes them."""
    prepared = []
    for k, task in enumerate(chosen):
        if len(task.answers) > N_PARALLEL:
            raise QuantLensError(
                f"Task {k + 1} (file task {task.index + 1}) has {len(task.answers)} answers; "
                f"llama-perplexity scores at most {N_PARALLEL} at once.",
                f"llama.cpp needs a higher -np (at least {len(task.answers)}) for it; "
                f"QuantLens scores up to {N_PARALLEL} answers per task.",
            )
        seqs = [_tokenize(sess, task.question + b" " + a) for a in task.answers]
        p = _prepare(k + 1, seqs, sess.n_ctx)
        if any(len(q) == p.prefix for q in seqs):
            raise QuantLensError(
                f"Task {k + 1} (file task {task.index + 1}): an answer adds no token after "
                "the tokens all answers share.",
                "llama-perplexity reads past that answer's tokens; make the answers differ.",
            )
        prepared.append(p)
    for batch, rows in _packed(sess, prepared, last_outputs=False):
        pairs: list[tuple[int, int]] = []
        for p in batch:
            li = 1  # row 0 of the task: the shared prefix's last logits, scored by softmax
            for seq in p.seqs:
                for j in range(p.prefix, len(seq) - 1):
                    pairs.append((p.i_logits + li, seq[j + 1]))
                    li += 1
        results = _pair_logprobs(rows, pairs, batch[0].number)
        ir = 0
        for p in batch:
            if not 0 <= p.i_logits < len(rows):
                raise QuantLensError(f"Task {p.number}: logits row out of range.", "")
            firsts = _first_logprob(rows[p.i_logits], [seq[p.prefix] for seq in p.seqs])
            scores = []
            for seq, first in zip(p.seqs, firsts, strict=True):
                log_prob = np.float32(first)  # float log_prob = std::log(first_probs[...])
                count = 1
                for _ in range(p.prefix, len(seq) - 1):
                    count += 1
                    log_prob = np.float32(log_prob + results[ir])  # summed in float
                    ir += 1
                scores.append(np.float32(log_prob / np.float32(count)))
            best = 0
            for s in range(1, len(scores)):
                if scores[s] > scores[best]:
                    best = s
            task = chosen[p.number - 1]
            yield task.labels[best] == 1, best, [float(v) for v in scores]


def tasks(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """params: model, tasks (a task file), kind ("hellaswag" (default), "winogrande", "mc" or
    "auto"), limit (400), ctx (512), threads, n_gpu_layers. Streams points named by the kind
    (x: tasks scored, y: accuracy %)."""
    abort = AbortFlag()
    abort.install()
    kind = str(params.get("kind") or "hellaswag")
    if kind == "auto":
        kind = detect_task_kind(params["tasks"])
    limit = int(params.get("limit", 400))
    scorer: Callable[[LlamaSession], Iterator[tuple[bool, int, list[float]]]]
    if kind == "hellaswag":
        hs = hellaswag_tasks(read_hellaswag(params["tasks"]), limit)
        n, scorer = len(hs), partial(score_hellaswag, chosen=hs)
    elif kind == "winogrande":
        wg = winogrande_tasks(read_winogrande(params["tasks"]), limit)
        n, scorer = len(wg), partial(score_winogrande, chosen=wg)
    elif kind == "mc":
        mc = mc_tasks(read_multiple_choice(params["tasks"]), limit)
        n, scorer = len(mc), partial(score_mc, chosen=mc)
    else:
        raise QuantLensError(f"Unknown task kind {kind!r}.", "Use hellaswag, winogrande or mc.")
    ctx = int(params.get("ctx", 512))
    result: dict[str, Any] = {"model": str(params["model"]), "kind": kind, "ctx": ctx}
    answers: list[str] = []
    try:
        with LlamaSession(
            params["model"],
            n_ctx=N_PARALLEL * ctx,
            n_batch=min(2048, N_PARALLEL * ctx),
            n_seq=N_PARALLEL,
            threads=params.get("threads"),
            n_gpu_layers=params.get("n_gpu_layers"),
            abort=abort,
            kv_unified=True,
        ) as sess:
            t0 = time.monotonic()
            for i, (right, pick, scores) in enumerate(scorer(sess)):
                answers.append("1" if right else "0")
                _emit_point(emit, kind, answers, i, n, t0, pick, scores)
        result.update(_summary(answers), seconds=time.monotonic() - t0)
        return result
    except Aborted:
        result.update(_summary(answers), partial=True)
        emit(Cancelled(partial=result))
        sys.stdout.flush()
        raise SystemExit(0) from None


def _emit_point(
    emit: Any,
    kind: str,
    answers: list[str],
    i: int,
    n: int,
    t0: float,
    pick: int,
    scores: list[float],
) -> None:
    """The task's point (series named by the kind; extra: the interval, right or not, the
    answer picked, the scores) and the progress with its ETA."""
    correct = answers.count("1")
    lo, hi = wilson(correct, i + 1)
    emit(
        Point(
            kind,
            x=i + 1,
            y=100.0 * correct / (i + 1),
            extra={
                "lo": 100 * lo,
                "hi": 100 * hi,
                "correct": answers[-1] == "1",
                "pick": pick,
                "scores": scores,
            },
        )
    )
    eta = (time.monotonic() - t0) / (i + 1) * (n - i - 1)
    emit(
        Progress(
            fraction=(i + 1) / n,
            message=f"task {i + 1}/{n}: {100 * correct / (i + 1):.2f}%",
            detail={"phase": "tasks", "eta_s": eta},
        )
    )


def _summary(answers: list[str]) -> dict[str, Any]:
    n, correct = len(answers), answers.count("1")
    lo, hi = wilson(correct, n)
    return {
        "tasks_scored": n,
        "correct": correct,
        "acc": 100.0 * correct / n if n else float("nan"),
        "acc_lo": 100 * lo,
        "acc_hi": 100 * hi,
        # each scored task right (1) or wrong (0), in scoring order: paired comparisons
        "answers": "".join(answers),
    }
