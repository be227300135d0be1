"""llama-bench's pp and tg tests on an open :class:`LlamaSession` (see ``tools/llama-bench``).

Each test gets a fresh context of n_prompt (or n_gen) tokens; one warm-up run (a whole prompt,
or one generated token) is excluded; then ``reps`` timed runs, random tokens, BOS first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from qtapp.core.evaluate.metrics import bench_stats
from qtapp.core.jobs.engine.llama_session import LlamaSession
from qtapp.core.jobs.events import Event, Point, Progress

Emit = Callable[[Event], None]


# -- speed ----------------------------------------------------------------------------------
def _test_prompt(sess: LlamaSession, n_prompt: int, rng: np.random.Generator) -> None:
    n_batch = sess.n_batch
    done = 0
    while done < n_prompt:
        n = min(n_prompt - done, n_batch)
        toks = rng.integers(0, sess.n_vocab, n, dtype=np.int32)
        if done == 0 and sess.add_bos:
            toks[0] = sess.bos
        out = np.zeros(n, dtype=np.int8)
        out[-1] = 1
        sess.decode(toks, done + np.arange(n, dtype=np.int32), np.zeros(n, np.int32), out)
        done += n
    sess.synchronize()


def _test_gen(sess: LlamaSession, n_gen: int, rng: np.random.Generator) -> None:
    tok = sess.bos if sess.add_bos else int(rng.integers(sess.n_vocab))
    one = np.ones(1, dtype=np.int8)
    zero = np.zeros(1, dtype=np.int32)
    for p in range(n_gen):
        sess.decode(np.array([tok], np.int32), np.array([p], np.int32), zero, one)
        sess.synchronize()
        tok = int(rng.integers(sess.n_vocab))


def run_speed(sess: LlamaSession, params: dict[str, Any], emit: Emit) -> dict[str, Any]:
    sess.abort_in_decode = False  # see LlamaSession: the callback costs ~1 ms per token
    reps = max(1, int(params.get("reps", 5)))
    n_prompt = int(params.get("n_prompt", 512))
    n_gen = int(params.get("n_gen", 128))
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"reps": reps, "n_prompt": n_prompt, "n_gen": n_gen}
    total = 2 * (reps + 1)
    step = 0
    for name, n_tok, test in (("pp", n_prompt, _test_prompt), ("tg", n_gen, _test_gen)):
        if n_tok <= 0:
            continue
        sess.reopen(n_ctx=n_tok, n_batch=2048, n_ubatch=512, n_seq=1)
        sess.clear_memory()
        test(sess, n_tok if name == "pp" else 1, rng)  # llama-bench's warm-up
        step += 1
        samples: list[int] = []
        for r in range(reps):
            sess.clear_memory()
            t0 = time.perf_counter_ns()
            test(sess, n_tok, rng)
            dt = time.perf_counter_ns() - t0
            samples.append(dt)
            step += 1
            emit(Point(f"{name}_tps", x=r + 1, y=1e9 * n_tok / dt))
            emit(
                Progress(
                    fraction=step / total,
                    message=f"{name}{n_tok} run {r + 1}/{reps}",
                    detail={"phase": "speed"},
                )
            )
        mean, sd = bench_stats(n_tok, samples)
        out[f"{name}_tps"], out[f"{name}_tps_sd"] = mean, sd
        out[f"{name}_samples_ns"] = samples
    out["n_gpu_layers"] = sess.n_gpu_layers
    out["threads"] = sess.threads
    return out
