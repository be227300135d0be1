"""The statistics and row maths of evaluation against independent numpy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qtapp.core.evaluate.logprobs import encode_base_rows, kld_rows, nll_rows
from qtapp.core.evaluate.metrics import (
    KldAccumulator,
    PplAccumulator,
    bench_stats,
    mean_and_uncertainty,
    median,
    percentile,
)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


@pytest.fixture()
def logits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    base = (rng.standard_normal((64, 500)) * 3).astype(np.float32)
    noisy = (base + rng.standard_normal(base.shape).astype(np.float32) * 0.3).astype(np.float32)
    targets = rng.integers(0, 500, 64)
    return base, noisy, targets


def test_ppl_accumulator_matches_direct_formula() -> None:
    rng = np.random.default_rng(0)
    nll = rng.gamma(2.0, 1.0, 1000)
    acc = PplAccumulator()
    acc.add(nll[:300])
    acc.add(nll[300:])
    assert acc.count == 1000
    assert acc.ppl == pytest.approx(math.exp(nll.mean()), rel=1e-12)
    expected_err = math.exp(nll.mean()) * nll.std() / math.sqrt(len(nll) - 1)
    assert acc.ppl_err == pytest.approx(expected_err, rel=1e-9)


def test_nll_rows_equals_float64_log_softmax(logits) -> None:
    base, _, targets = logits
    expected = -_log_softmax(base)[np.arange(64), targets]
    got = nll_rows(base.copy(), targets)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_kld_of_a_distribution_with_itself_is_zero(logits) -> None:
    base, _, targets = logits
    enc = encode_base_rows(base.copy(), targets)
    nll, nll_base, kld, same = kld_rows(base.copy(), targets, enc)
    assert np.all(same)
    assert np.abs(kld).max() < 1e-3  # only the 16-bit quantisation of the base remains
    seen = nll < 15  # llama.cpp's base file clamps log-probs at max - 16
    assert seen.sum() > 50
    np.testing.assert_allclose(nll[seen], nll_base[seen], atol=2e-4)


def test_kld_rows_match_dense_kl_divergence(logits) -> None:
    base, noisy, targets = logits
    enc = encode_base_rows(base.copy(), targets)
    _, _, kld, _ = kld_rows(noisy.copy(), targets, enc)
    lp, lq = _log_softmax(base), _log_softmax(noisy)
    dense = (np.exp(lp) * (lp - lq)).sum(axis=1)
    np.testing.assert_allclose(kld, dense, rtol=2e-3, atol=2e-4)
    assert kld.mean() > 0.01  # the noise is visible


def test_sparse_tail_keeps_kld_close(logits) -> None:
    base, noisy, targets = logits
    exact = kld_rows(noisy.copy(), targets, encode_base_rows(base.copy(), targets))[2]
    lumped_enc = encode_base_rows(base.copy(), targets, eps=1e-3)
    assert lumped_enc.counts.sum() < encode_base_rows(base.copy(), targets).counts.sum()
    lumped = kld_rows(noisy.copy(), targets, lumped_enc)[2]
    assert abs(lumped.mean() - exact.mean()) / exact.mean() < 0.02


def test_base_rows_slice_roundtrip(logits) -> None:
    base, _, targets = logits
    enc = encode_base_rows(base.copy(), targets)
    part = enc.rows(10, 20)
    assert len(part.counts) == 10
    assert len(part.index) == int(enc.counts[10:20].sum())


def test_kld_accumulator_summary_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    n = 500
    nll = rng.gamma(2.0, 1.0, n).astype(np.float32)
    nll_base = (nll - rng.normal(0, 0.05, n)).astype(np.float32)
    kld = rng.gamma(1.0, 0.01, n)
    same = rng.random(n) < 0.9
    acc = KldAccumulator()
    acc.add(nll[:200], nll_base[:200], kld[:200], same[:200])
    acc.add(nll[200:], nll_base[200:], kld[200:], same[200:])
    s = acc.summary()
    assert s["kld_mean"] == pytest.approx(kld.mean(), rel=1e-6)
    assert s["kld_mean_err"] == pytest.approx(kld.std() / math.sqrt(n - 1), rel=1e-5)
    assert s["kld_max"] == pytest.approx(kld.max(), rel=1e-6)
    assert s["kld_median"] == pytest.approx(np.median(kld), rel=1e-6)
    assert s["kld_p99"] == pytest.approx(np.percentile(kld, 99), rel=1e-4)
    assert s["same_top_pct"] == pytest.approx(100 * same.mean())
    dp = np.exp(-nll.astype(np.float64)) - np.exp(-nll_base.astype(np.float64))
    assert s["dp_rms"] == pytest.approx(math.sqrt((dp**2).mean()), rel=1e-4)
    ratio = math.exp(nll.astype(np.float64).mean() - nll_base.astype(np.float64).mean())
    assert s["ppl_ratio"] == pytest.approx(ratio, rel=1e-6)
    assert s["tokens"] == n


def test_llama_helpers() -> None:
    assert mean_and_uncertainty(10.0, 30.0, 5) == (2.0, 0.0)  # too few values: no uncertainty
    values = np.sort(np.arange(11, dtype=np.float32))
    assert percentile(values, 0.5) == pytest.approx(5.0)
    assert percentile(values, 0.99) == pytest.approx(9.9, rel=1e-5)
    assert median(np.array([1, 2, 3, 4], np.float32)) == 2.5


def test_bench_stats_is_llama_bench_avg_and_stdev() -> None:
    samples = [1_000_000_000, 2_000_000_000, 4_000_000_000]
    mean, sd = bench_stats(512, samples)
    ts = [512.0, 256.0, 128.0]
    assert mean == pytest.approx(np.mean(ts))
    assert sd == pytest.approx(np.std(ts, ddof=1))
    assert bench_stats(512, [1_000_000_000])[1] == 0.0
