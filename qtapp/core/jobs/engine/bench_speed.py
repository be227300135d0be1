"""llama-bench's pp and tg tests on an open :class:`LlamaSession` (see ``tools/llama-bench``),
at one or more context depths (its ``-d``).

For each depth, in the order given, a pp test then a tg test, each as llama-bench runs one
instance: a fresh context of ``n_prompt + depth`` (or ``n_gen + depth``) tokens, its memory
cleared, one warm-up run on the empty memory (the whole prompt, or one generated token), then
``reps`` timed runs. Before each run the memory is cleared and, at a depth > 0, filled with
``depth`` prompt tokens (untimed); the filled state is saved once and restored for the next runs
and the next test at the same depth, as llama-bench's ``ctx_state`` does. Only the pp or tg run
itself is timed; tokens/s per run = tokens / seconds, then mean and sample sd. Random tokens,
BOS first in every prompt run and as the first generated token.
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


# -- llama-bench's test_prompt and test_gen -------------------------------------------------
def _test_prompt(sess: LlamaSession, n_prompt: int, rng: np.random.Generator) -> None:
    """``n_prompt`` tokens in batches of n_batch; positions continue from the memory."""
    n_batch = sess.n_batch
    start = sess.pos_max() + 1
    done = 0
    while done < n_prompt:
        n = min(n_prompt - done, n_batch)
        toks = rng.integers(0, sess.n_vocab, n, dtype=np.int32)
        if done == 0 and sess.add_bos:
            toks[0] = sess.bos
        out = np.zeros(n, dtype=np.int8)
        out[-1] = 1
        pos = start + done + np.arange(n, dtype=np.int32)
        sess.decode(toks, pos, np.zeros(n, np.int32), out)
        done += n
    sess.synchronize()


def _test_gen(sess: LlamaSession, n_gen: int, rng: np.random.Generator) -> None:
    """``n_gen`` single-token decodes after what the memory holds."""
    tok = sess.bos if sess.add_bos else int(rng.integers(sess.n_vocab))
    one = np.ones(1, dtype=np.int8)
    zero = np.zeros(1, dtype=np.int32)
    p = sess.pos_max() + 1
    for _ in range(n_gen):
        sess.decode(np.array([tok], np.int32), np.array([p], np.int32), zero, one)
        sess.synchronize()
        p += 1
        tok = int(rng.integers(sess.n_vocab))


class _DepthState:
    """llama-bench's ``ctx_state``: the memory at the last depth filled."""

    def __init__(self) -> None:
        self.depth = 0
        self.buf: Any = None

    def fill(self, sess: LlamaSession, depth: int, rng: np.random.Generator) -> None:
        if depth == self.depth and self.buf is not None and sess.restore_seq(self.buf):
            return
        _test_prompt(sess, depth, rng)
        self.depth = depth
        self.buf = sess.save_seq()


def parse_depths(value: Any) -> list[int]:
    """``[0, 1024]`` or ``"0,1024"`` -> ``[0, 1024]`` (the parent checked them)."""
    if value is None or value == "":
        return [0]
    if isinstance(value, str):
        return [int(v) for v in value.replace(" ", "").split(",") if v]
    return [int(v) for v in value]


# long: llama-bench's instance loop in one piece, so it reads side by side with llama-bench.cpp
def run_speed(sess: LlamaSession, params: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """pp ``n_prompt`` and tg ``n_gen`` at every depth of ``params["depths"]`` (default [0]).

    Streams one ``Point`` per depth and test (series ``pp_depth`` / ``tg_depth``: x = depth,
    y = mean tokens/s, err = sd; ``extra`` has the samples), and at depth 0 one per repetition
    (``pp_tps`` / ``tg_tps``, x = repetition). Returns the depth-0 figures as ``pp_tps`` ... and
    every point under ``points``; ``points`` is also filled as it goes, so a cancel keeps them.
    """
    sess.abort_in_decode = False  # see LlamaSession: the callback costs ~1 ms per token
    reps = max(1, int(params.get("reps", 5)))
    n_prompt = int(params.get("n_prompt", 512))
    n_gen = int(params.get("n_gen", 128))
    n_batch = int(params.get("n_batch", 2048))
    n_ubatch = int(params.get("n_ubatch", 512))
    depths = parse_depths(params.get("depths"))
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {
        "reps": reps,
        "n_prompt": n_prompt,
        "n_gen": n_gen,
        "depths": depths,
        "n_gpu_layers": sess.n_gpu_layers,
        "n_cpu_moe": sess.n_cpu_moe,
        "threads": sess.threads,
        "points": [],
    }
    tests = [t for t in (("pp", n_prompt), ("tg", n_gen)) if t[1] > 0]
    total = max(1, len(depths) * len(tests) * (reps + 1))
    step = 0
    state = _DepthState()
    for depth in depths:
        for name, n_tok in tests:
            test = _test_prompt if name == "pp" else _test_gen
            sess.reopen(n_ctx=n_tok + depth, n_batch=n_batch, n_ubatch=n_ubatch, n_seq=1)
            sess.clear_memory(False)
            test(sess, n_tok if name == "pp" else 1, rng)  # llama-bench's warm-up
            step += 1
            samples: list[int] = []
            for r in range(reps):
                sess.clear_memory(False)
                if depth > 0:
                    state.fill(sess, depth, rng)
                t0 = time.perf_counter_ns()
                test(sess, n_tok, rng)
                dt = time.perf_counter_ns() - t0
                samples.append(dt)
                step += 1
                if depth == 0:
                    emit(Point(f"{name}_tps", x=r + 1, y=1e9 * n_tok / dt))
                at = f" @ d{depth}" if depth else ""
                emit(
                    Progress(
                        fraction=step / total,
                        message=f"{name}{n_tok}{at} run {r + 1}/{reps}",
                        detail={"phase": "speed", "depth": depth},
                    )
                )
            mean, sd = bench_stats(n_tok, samples)
            point = {
                "depth": depth,
                "test": name,
                "n_tokens": n_tok,
                "avg_ts": mean,
                "stddev_ts": sd,
                "samples_ns": samples,
            }
            out["points"].append(point)
            emit(
                Point(
                    f"{name}_depth",
                    x=depth,
                    y=mean,
                    err=sd,
                    extra={"n_tokens": n_tok, "reps": reps, "samples_ns": samples},
                )
            )
            if depth == 0:
                out[f"{name}_tps"], out[f"{name}_tps_sd"] = mean, sd
                out[f"{name}_samples_ns"] = samples
    return out
