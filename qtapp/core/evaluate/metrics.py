"""Perplexity, KL-divergence and speed statistics, computed exactly as llama.cpp prints them.

Pure numpy, no Qt and no llama.cpp: the formulas of ``tools/perplexity/perplexity.cpp``
(``perplexity()`` and ``kl_divergence()``) and ``tools/llama-bench/llama-bench.cpp``
(``avg``/``stdev`` of tokens/s), so a test can check them against an independent computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def mean_and_uncertainty(total: float, total2: float, count: int) -> tuple[float, float]:
    """``mean_and_uncertainty`` of kl_divergence(): the mean and its standard error.

    The error is 0 under 11 values.
    """
    if count < 1:
        return 0.0, 0.0
    f = total / count
    df = total2 / count - f * f
    df = math.sqrt(df / (count - 1)) if df > 0 and count > 10 else 0.0
    return f, df


def covariance(suma: float, sumb: float, sumab: float, count: int) -> float:
    if count < 10:
        return 0.0
    return (sumab / count - (suma / count) * (sumb / count)) / (count - 1)


def percentile(sorted_values: np.ndarray, fraction: float) -> float:
    """llama.cpp's linear-interpolation percentile over already sorted float32 values."""
    v = sorted_values
    if len(v) == 0:
        return float("nan")
    if fraction <= 0:
        return float(v[0])
    if fraction >= 1:
        return float(v[-1])
    p = np.float32(fraction) * np.float32(len(v) - 1)
    ip = int(p)
    p = np.float32(p - ip)
    return float((np.float32(1) - p) * v[ip] + p * v[min(ip + 1, len(v) - 1)])


def median(sorted_values: np.ndarray) -> float:
    v = sorted_values
    n = len(v)
    if n == 0:
        return float("nan")
    if n % 2 == 0:
        return float(np.float32(0.5) * (v[n // 2] + v[n // 2 - 1]))
    return float(v[n // 2])


@dataclass
class PplAccumulator:
    """Running perplexity of ``perplexity()``: sums of nll and nll squared over scored tokens."""

    nll: float = 0.0
    nll2: float = 0.0
    count: int = 0
    text_bytes: int = 0  # UTF-8 bytes of the scored tokens' text (0: unknown)

    def add(self, nll: np.ndarray, text_bytes: int = 0) -> None:
        values = np.asarray(nll, dtype=np.float64)
        self.nll += float(values.sum())
        self.nll2 += float(np.dot(values, values))
        self.count += int(values.size)
        self.text_bytes += int(text_bytes)

    @property
    def bpb(self) -> float:
        """Bits per byte of the scored text: the same log-likelihoods as PPL, divided by the
        text's bytes instead of its tokens, so models with different tokenizers compare."""
        if not self.text_bytes:
            return float("nan")
        return self.nll / math.log(2) / self.text_bytes

    @property
    def bpb_err(self) -> float:
        """The standard error of :attr:`bpb` (the tokens' spread, as for ``ppl_err``)."""
        if self.count < 2 or not self.text_bytes:
            return 0.0
        av = self.nll / self.count
        var = self.nll2 / self.count - av * av
        if var <= 0:
            return 0.0
        return math.sqrt(var / (self.count - 1)) * self.count / math.log(2) / self.text_bytes

    @property
    def ppl(self) -> float:
        return math.exp(self.nll / self.count) if self.count else float("nan")

    @property
    def ppl_err(self) -> float:
        """The ``+/-`` of ``Final estimate: PPL = x +/- err``."""
        if self.count < 2:
            return 0.0
        av = self.nll / self.count
        av2 = self.nll2 / self.count - av * av
        return math.sqrt(av2 / (self.count - 1)) * self.ppl if av2 > 0 else 0.0


@dataclass
class KldAccumulator:
    """The sums of ``kl_divergence_result`` plus every token's KLD and delta-p for percentiles."""

    sum_nll: float = 0.0
    sum_nll2: float = 0.0
    sum_nll_base: float = 0.0
    sum_nll_base2: float = 0.0
    sum_nll_nll_base: float = 0.0
    sum_kld: float = 0.0
    sum_kld2: float = 0.0
    sum_p_diff: float = 0.0
    sum_p_diff2: float = 0.0
    sum_p_diff4: float = 0.0
    max_p_diff: float = 0.0
    n_same_top: int = 0
    count: int = 0
    kld_values: list[np.ndarray] = field(default_factory=list)
    p_diff_values: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        nll: np.ndarray,
        nll_base: np.ndarray,
        kld: np.ndarray,
        same_top: np.ndarray,
    ) -> None:
        """Add rows. ``nll``/``nll_base`` are float32 as in llama.cpp; ``kld`` per token."""
        nll = np.asarray(nll, dtype=np.float32)
        nll_base = np.asarray(nll_base, dtype=np.float32)
        kld = np.asarray(kld, dtype=np.float64)
        self.sum_nll += float(nll.astype(np.float64).sum())
        self.sum_nll2 += float((nll * nll).astype(np.float64).sum())
        self.sum_nll_base += float(nll_base.astype(np.float64).sum())
        self.sum_nll_base2 += float((nll_base * nll_base).astype(np.float64).sum())
        self.sum_nll_nll_base += float((nll * nll_base).astype(np.float64).sum())
        self.sum_kld += float(kld.sum())
        self.sum_kld2 += float(np.dot(kld, kld))
        p_diff = np.exp(-nll) - np.exp(-nll_base)  # float32, as llama.cpp
        self.sum_p_diff += float(p_diff.astype(np.float64).sum())
        d2 = (p_diff * p_diff).astype(np.float64)
        self.sum_p_diff2 += float(d2.sum())
        self.sum_p_diff4 += float(np.dot(d2, d2))
        if p_diff.size:
            self.max_p_diff = max(self.max_p_diff, float(np.abs(p_diff).max()))
        self.n_same_top += int(np.count_nonzero(same_top))
        self.count += int(nll.size)
        self.kld_values.append(kld.astype(np.float32))
        self.p_diff_values.append(p_diff.astype(np.float32))

    def running(self) -> dict[str, float]:
        """The values of one row of llama-perplexity's per-chunk KLD table."""
        n = self.count
        log_ppl, log_ppl_err = mean_and_uncertainty(self.sum_nll, self.sum_nll2, n)
        log_base, log_base_err = mean_and_uncertainty(self.sum_nll_base, self.sum_nll_base2, n)
        cov = covariance(self.sum_nll, self.sum_nll_base, self.sum_nll_nll_base, n)
        ratio_unc2 = log_ppl_err**2 + log_base_err**2 - 2.0 * cov
        kld, kld_err = mean_and_uncertainty(self.sum_kld, self.sum_kld2, n)
        mse, mse_err = mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, n)
        rms = math.sqrt(mse)
        top = self.n_same_top / n if n else float("nan")
        ppl = math.exp(log_ppl)
        return {
            "ppl": ppl,
            "ppl_err": ppl * log_ppl_err,
            "ppl_base": math.exp(log_base),
            "ppl_base_err": math.exp(log_base) * log_base_err,
            "ln_ppl_ratio": log_ppl - log_base,
            "ln_ppl_ratio_err": math.sqrt(max(ratio_unc2, 0.0)),
            "kld_mean": kld,
            "kld_mean_err": kld_err,
            "dp_rms": rms,
            "dp_rms_err": 0.5 / rms * mse_err if rms > 0 else 0.0,
            "same_top": top,
            "same_top_err": math.sqrt(top * (1 - top) / (n - 1)) if n > 1 else 0.0,
        }

    def summary(self) -> dict[str, Any]:
        """Everything ``llama-perplexity --kl-divergence`` prints at the end (fractions, not %)."""
        out: dict[str, Any] = dict(self.running())
        n = self.count
        log_ppl, log_ppl_err = mean_and_uncertainty(self.sum_nll, self.sum_nll2, n)
        log_base, log_base_err = mean_and_uncertainty(self.sum_nll_base, self.sum_nll_base2, n)
        ratio = math.exp(out["ln_ppl_ratio"])
        cov = covariance(self.sum_nll, self.sum_nll_base, self.sum_nll_nll_base, n)
        ppl_cov = out["ppl"] * out["ppl_base"] * cov
        diff2 = out["ppl_err"] ** 2 + out["ppl_base_err"] ** 2 - 2.0 * ppl_cov
        denom = log_ppl_err * log_base_err
        out.update(
            ppl_ratio=ratio,
            ppl_ratio_err=ratio * out["ln_ppl_ratio_err"],
            ppl_diff=out["ppl"] - out["ppl_base"],
            ppl_diff_err=math.sqrt(max(diff2, 0.0)),
            ppl_cor=cov / denom if denom > 0 else float("nan"),
        )
        kld = np.sort(np.concatenate(self.kld_values)) if self.kld_values else np.zeros(0)
        dp = np.sort(np.concatenate(self.p_diff_values)) if self.p_diff_values else np.zeros(0)
        if len(kld):
            out.update(
                kld_max=float(kld[-1]),
                kld_p999=percentile(kld, 0.999),
                kld_p99=percentile(kld, 0.99),
                kld_p95=percentile(kld, 0.95),
                kld_p90=percentile(kld, 0.90),
                kld_median=median(kld),
                kld_p10=percentile(kld, 0.10),
                kld_p1=percentile(kld, 0.01),
                kld_min=float(kld[0]),
                dp_mean=mean_and_uncertainty(self.sum_p_diff, self.sum_p_diff2, n)[0],
                dp_mean_err=mean_and_uncertainty(self.sum_p_diff, self.sum_p_diff2, n)[1],
                dp_max=float(dp[-1]),
                dp_min=float(dp[0]),
                dp_median=median(dp),
                dp_p99=percentile(dp, 0.99),
                dp_p1=percentile(dp, 0.01),
            )
        out["same_top_pct"] = 100.0 * out["same_top"]
        out["tokens"] = n
        return out


def bench_stats(tokens: int, samples_ns: list[int]) -> tuple[float, float]:
    """llama-bench's ``avg_ts`` and ``stdev_ts``: tokens/s per repetition, mean and sample sd."""
    ts = [1e9 * tokens / t for t in samples_ns if t > 0]
    if not ts:
        return float("nan"), float("nan")
    mean = sum(ts) / len(ts)
    if len(ts) <= 1:
        return mean, 0.0
    sq = sum(t * t for t in ts)
    var = sq / (len(ts) - 1) - mean * mean * len(ts) / (len(ts) - 1)
    return mean, math.sqrt(max(var, 0.0))
