"""Row maths on blocks of logits, in place, the way llama-perplexity does it per token.

Each function takes ``x``, a writable float32 block (rows x vocab, often a view on llama.cpp's own
logits buffer) and the target token of every row, and overwrites ``x`` with exponentials: no
copy of the vocabulary-sized rows is made.

The base model's log-probabilities for KL divergence are kept in llama-perplexity's own
quantisation (``log_softmax(..., uint16_t * log_prob, ...)``: 16-bit steps between the row's
minimum, clamped at max - 16, and its maximum) but sparse: llama-perplexity's KLD sum skips every
token whose quantised log-prob is not above -16, so only the others are stored (about 500 of
Gemma's 262k tokens per position), which keeps every KLD term bit-for-bit llama-perplexity's.
With ``eps > 0`` only the most probable tokens holding all but ``eps`` of that mass are kept and
the rest is one lumped "tail" term ``P log(P / Q)`` (a lower bound by the log-sum inequality).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: llama-perplexity ignores base tokens with log-prob <= -16 in the KLD sum
LOG_P_FLOOR = np.float32(-16.0)
_F32 = np.float32


def _softmax_inplace(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """argmax, max and log(sum(exp(x - max))) per row; leaves exp(x - max) in ``x``."""
    imax = np.argmax(x, axis=1)
    rows = np.arange(x.shape[0])
    m = x[rows, imax].copy()
    x -= m[:, None]
    np.exp(x, out=x)
    s = x.sum(axis=1, dtype=np.float64)
    return imax, m, np.log(s)


def nll_rows(x: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of each row's target (``perplexity()``'s double precision)."""
    rows = np.arange(x.shape[0])
    xt = x[rows, targets].copy()
    _, m, lse = _softmax_inplace(x)
    nll: np.ndarray = lse - (xt - m).astype(np.float64)
    return nll


@dataclass
class BaseRows:
    """The base model's scored positions of one chunk, quantised and sparse (see module doc)."""

    scale: np.ndarray  # float32 [R]
    min_log_prob: np.ndarray  # float32 [R]
    q_target: np.ndarray  # uint16 [R]: quantised log-prob of the target token
    argmax: np.ndarray  # int32 [R]: llama.cpp's imax_base (first max of the quantised row)
    counts: np.ndarray  # int32 [R]: stored tokens per row
    index: np.ndarray  # int32 [sum(counts)]
    value: np.ndarray  # uint16 [sum(counts)]
    tail: np.ndarray  # float64 [R]: base mass (log-prob > -16) of the tokens not stored
    nll: np.ndarray  # float64 [R]: the base's own negative log-likelihood

    def to_arrays(self) -> dict[str, np.ndarray]:
        return dict(self.__dict__)

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray]) -> BaseRows:
        return cls(**{k: np.asarray(data[k]) for k in cls.__dataclass_fields__})

    @classmethod
    def concat(cls, parts: list[BaseRows]) -> BaseRows:
        return cls(
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in cls.__dataclass_fields__}
        )

    def rows(self, start: int, stop: int) -> BaseRows:
        off = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        a, b = int(off[start]), int(off[stop])
        return BaseRows(
            self.scale[start:stop],
            self.min_log_prob[start:stop],
            self.q_target[start:stop],
            self.argmax[start:stop],
            self.counts[start:stop],
            self.index[a:b],
            self.value[a:b],
            self.tail[start:stop],
            self.nll[start:stop],
        )


def encode_base_rows(x: np.ndarray, targets: np.ndarray, eps: float = 0.0) -> BaseRows:
    """Quantise each row as llama-perplexity writes its ``--kl-divergence-base`` file and keep
    the tokens that its KLD sum uses (``eps = 0``) or those holding ``1 - eps`` of their mass.
    Overwrites ``x``."""
    n_rows, _ = x.shape
    rows = np.arange(n_rows)
    xt = x[rows, targets].copy()
    mx = x.max(axis=1)
    mn = np.maximum(x.min(axis=1), mx - _F32(16))
    scale = ((mx - mn) / _F32(65535)).astype(np.float32)
    q = np.empty(x.shape, dtype=np.uint16)
    for r in range(n_rows):
        row = x[r]
        if scale[r] == 0:
            q[r] = 0
            continue
        v = (row - mn[r]) * (_F32(1) / scale[r])
        np.rint(v, out=v)
        v[row <= mn[r]] = 0
        q[r] = v.astype(np.uint16)
    imax_q = np.argmax(q, axis=1).astype(np.int32)
    _, m, lse = _softmax_inplace(x)  # x now holds exp(x - max)
    lse32 = lse.astype(np.float32)
    min_lp = ((mn - mx) - lse32).astype(np.float32)
    q_target = q[rows, targets]
    nll = lse - (xt - m).astype(np.float64)

    counts = np.zeros(n_rows, dtype=np.int32)
    tails = np.zeros(n_rows, dtype=np.float64)
    idx_parts: list[np.ndarray] = []
    val_parts: list[np.ndarray] = []
    levels = np.arange(65536, dtype=np.float32)
    for r in range(n_rows):
        qr = q[r]
        # llama.cpp counts only tokens whose quantised log-prob is above -16
        lp = (scale[r] * levels + min_lp[r]).astype(np.float32)
        live = lp > LOG_P_FLOOR
        n_at = np.bincount(qr, minlength=65536)
        mass = np.where(live, n_at * np.exp(lp.astype(np.float64)), 0.0)
        cum = np.cumsum(mass[::-1])[::-1]  # mass at or above each level
        above = np.nonzero(cum >= (1.0 - eps) * cum[0])[0]
        thr = max(
            int(above[-1]) if len(above) else 0, int(np.argmax(live)) if live.any() else 65535
        )
        keep = np.nonzero(qr >= thr)[0].astype(np.int32)
        idx_parts.append(keep)
        val_parts.append(qr[keep])
        counts[r] = len(keep)
        tails[r] = float(cum[0] - cum[thr])
    return BaseRows(
        scale=scale,
        min_log_prob=min_lp,
        q_target=q_target.astype(np.uint16),
        argmax=imax_q,
        counts=counts,
        index=np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int32),
        value=np.concatenate(val_parts) if val_parts else np.zeros(0, np.uint16),
        tail=tails,
        nll=nll,
    )


def kld_rows(
    x: np.ndarray, targets: np.ndarray, base: BaseRows
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: nll (float32), base nll (float32), KLD(base || model), same top token.

    The formulas of perplexity.cpp's ``log_softmax(..., base_log_prob, ..., kld)``.
    Overwrites ``x``.
    """
    n_rows, n_vocab = x.shape
    rows = np.arange(n_rows)
    xt = x[rows, targets].copy()
    counts = base.counts.astype(np.int64)
    row_of = np.repeat(rows, counts)
    flat = row_of * n_vocab + base.index
    xg = x.reshape(-1)[flat]  # the model's logits at the stored base tokens
    imax, m, lse = _softmax_inplace(x)
    eg = x.reshape(-1)[flat]  # exp(x - max) at the stored tokens
    lse32 = lse.astype(np.float32)
    top = (m + lse32).astype(np.float32)  # llama.cpp: max_logit += log_sum_exp
    nll = (top - xt).astype(np.float32)
    nll_base = (-(base.scale * base.q_target.astype(np.float32) + base.min_log_prob)).astype(
        np.float32
    )
    plb = (base.scale[row_of] * base.value.astype(np.float32) + base.min_log_prob[row_of]).astype(
        np.float32
    )
    terms = np.exp(plb) * (plb - xg + top[row_of])
    terms = np.where(plb > LOG_P_FLOOR, terms, _F32(0)).astype(np.float64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    kld = _segment_sum(terms, starts, counts)
    q_stored = _segment_sum(eg.astype(np.float64), starts, counts) / np.exp(lse)
    tail = base.tail
    with np.errstate(divide="ignore", invalid="ignore"):
        q_tail = np.maximum(1.0 - q_stored, 1e-30)
        lumped = np.where(tail > 0, tail * np.log(tail / q_tail), 0.0)
    kld = kld + lumped
    same = imax == base.argmax
    return nll, nll_base, kld, same


def _segment_sum(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts), dtype=np.float64)
    nz = counts > 0
    if values.size:
        out[nz] = np.add.reduceat(values, starts[nz])
    return out
