"""Worker handler ``tasks``: HellaSwag accuracy as ``llama-perplexity --hellaswag`` computes it.

Read from the pinned ``tools/perplexity/perplexity.cpp`` (``hellaswag_score``): the same tasks
in the same order (:func:`qtapp.core.evaluate.tasks.hellaswag_tasks`), each tokenized as
``context + " " + ending`` with BOS, the tokens the four endings share decoded once for four
sequences of a unified KV cache (``n_parallel`` 4, context ``4 x ctx``), the first ending token
scored from the shared prefix's last logits (a softmax summed in double), the others from their
own logits, each ending's log-probabilities averaged over its tokens, the best average the
answer. Each scored task streams a point with the running accuracy and its 95% Wilson interval;
a cancel keeps the tasks scored so far.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.tasks import HsTask, hellaswag_tasks, read_hellaswag, wilson
from qtapp.core.jobs.engine.llama_session import Aborted, AbortFlag, LlamaSession
from qtapp.core.jobs.events import Cancelled, Point, Progress

N_PARALLEL = 4  # llama-perplexity: n_parallel = max(4, n_parallel) for task scoring


_BLOCK = 32  # rows of logits per vectorized log-softmax (32 x 262k floats: 32 MiB)


def _logprobs(rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``compute_logprobs``, row by row in float: each target's logit minus the row's maximum
    minus the log of the sum of the exponentials."""
    out = np.empty(len(targets), dtype=np.float32)
    for a in range(0, len(targets), _BLOCK):
        block = rows[a : a + _BLOCK]
        m = block.max(axis=1)
        s = np.exp(block - m[:, None], dtype=np.float32).sum(axis=1, dtype=np.float32)
        picked = block[np.arange(len(block)), targets[a : a + _BLOCK]]
        out[a : a + _BLOCK] = (picked - m) - np.log(s)
    return out


def _first_logprob(row: np.ndarray, tokens: list[int]) -> list[float]:
    """``softmax`` then ``std::log``: exponentials in float, their sum in double."""
    e = np.exp(row - row.max(), dtype=np.float32)
    total = float(e.sum(dtype=np.float64))
    return [float(np.log(np.float64(np.float32(e[t] / total)))) for t in tokens]


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


def tasks(params: dict[str, Any], emit: Any) -> dict[str, Any]:
    """params: model, tasks (a HellaSwag text file), limit (400), ctx (512), threads,
    n_gpu_layers. Streams ``hellaswag`` points (x: tasks scored, y: accuracy %)."""
    abort = AbortFlag()
    abort.install()
    chosen = hellaswag_tasks(read_hellaswag(params["tasks"]), int(params.get("limit", 400)))
    ctx = int(params.get("ctx", 512))
    result: dict[str, Any] = {"model": str(params["model"]), "kind": "hellaswag", "ctx": ctx}
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
            for i, task in enumerate(chosen):
                best, _scores = score_task(sess, task)
                answers.append("1" if best == task.gold else "0")
                _emit_point(emit, answers, i, len(chosen), t0)
        result.update(_summary(answers), seconds=time.monotonic() - t0)
        return result
    except Aborted:
        result.update(_summary(answers), partial=True)
        emit(Cancelled(partial=result))
        sys.stdout.flush()
        raise SystemExit(0) from None


def _emit_point(emit: Any, answers: list[str], i: int, n: int, t0: float) -> None:
    correct = answers.count("1")
    lo, hi = wilson(correct, i + 1)
    emit(
        Point(
            "hellaswag",
            x=i + 1,
            y=100.0 * correct / (i + 1),
            extra={"lo": 100 * lo, "hi": 100 * hi, "correct": answers[-1] == "1"},
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
