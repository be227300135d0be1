"""The multiple-choice knapsack: one candidate type per group, total bytes within the budget,
least predicted KL divergence.

Costs are llama.cpp's exact bytes of each group's tensors in each type (from dry runs of one
"every tensor at type T" recipe per candidate, fallbacks included); values are the scan's
measured KLD increases, assumed additive across groups. The dynamic programme runs over the
budget cut into ``resolution`` units with every option's cost rounded *up* to whole units, so
any solution it returns fits the exact budget (it may leave less than 1/``resolution`` of
the free budget per group unused).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from qtapp.core.errors import QuantLensError
from qtapp.core.tailor.groups import Group

RESOLUTION = 20_000


@dataclass(frozen=True)
class Option:
    """One choice for one group: a candidate type, its exact bytes and measured KLD increase."""

    type: str
    bytes: int
    delta: float


@dataclass
class Solution:
    choice: dict[str, str]  # group name -> candidate type
    bytes: int  # exact weights bytes of the whole model with this choice
    predicted_kld: float  # reference KLD (everything high) + the chosen groups' increases
    options: dict[str, list[Option]] = field(default_factory=dict, repr=False)


def group_options(
    groups: list[Group],
    sizes: Mapping[str, Mapping[str, int]],
    types: Mapping[str, Mapping[str, str]],
    deltas: Mapping[str, Mapping[str, float]],
) -> dict[str, list[Option]]:
    """Each group's options, cheapest first; candidates that end up as the same ggml types
    (llama.cpp's fallbacks: Q2_K and Q3_K both become Q4_0 on rows of 640) count once.

    ``sizes[T][tensor]``/``types[T][tensor]``: exact bytes and ggml type of each tensor in the
    "every tensor at T" dry run; ``deltas[group][T]``: measured KLD increase (clamped at 0:
    a negative increase is noise)."""
    out: dict[str, list[Option]] = {}
    for g in groups:
        seen: set[tuple[str, ...]] = set()
        opts: list[Option] = []
        for t in sizes:
            if t not in deltas.get(g.name, {}):
                continue
            key = tuple(types[t].get(n, "") for n in g.tensors)
            if key in seen:
                continue
            seen.add(key)
            nbytes = sum(int(sizes[t][n]) for n in g.tensors)
            opts.append(Option(t, nbytes, max(0.0, float(deltas[g.name][t]))))
        if not opts:
            raise QuantLensError(
                f"The scan has no measurement for the tensor group {g.name}.",
                "Run the scan again (the model or the candidate types changed).",
            )
        out[g.name] = sorted(opts, key=lambda o: (o.bytes, o.delta))
    return out


def smallest_bytes(options: Mapping[str, list[Option]], fixed: int) -> int:
    return fixed + sum(min(o.bytes for o in opts) for opts in options.values())


def solve(
    options: Mapping[str, list[Option]],
    fixed: int,
    budget: int,
    reference_kld: float = 0.0,
    resolution: int = RESOLUTION,
) -> Solution:
    """The least-KLD choice whose exact bytes (``fixed`` + chosen groups) fit ``budget``.

    ``fixed``: bytes of the tensors no group holds (norms, 1-D tensors). Raises a
    QuantLensError naming the smallest achievable size when nothing fits.
    """
    floor = smallest_bytes(options, fixed)
    if budget < floor:
        raise QuantLensError(
            f"The budget {budget / 2**20:.1f} MiB is below the smallest possible mix "
            f"({floor / 2**20:.1f} MiB, {floor} bytes, every group at its smallest type).",
            f"Give a budget of at least {math.ceil(floor / 2**20)} MiB, or add a smaller "
            "candidate type.",
        )
    names = list(options)
    spare = budget - floor
    unit = max(1, math.ceil(spare / resolution))
    cap = spare // unit
    dp = np.zeros(cap + 1, dtype=np.float64)  # least total delta using at most c units
    picks: list[np.ndarray] = []
    for name in names:
        opts = options[name]
        low = opts[0].bytes
        new = np.full(cap + 1, np.inf)
        pick = np.zeros(cap + 1, dtype=np.int16)
        for k, o in enumerate(opts):
            u = math.ceil((o.bytes - low) / unit)
            if u > cap:
                continue
            cand = np.full(cap + 1, np.inf)
            cand[u:] = dp[: cap + 1 - u] + o.delta
            better = cand < new
            new[better] = cand[better]
            pick[better] = k
        dp = new
        picks.append(pick)
    c = cap
    choice: dict[str, str] = {}
    total = fixed
    delta = 0.0
    for name, pick in zip(reversed(names), reversed(picks), strict=True):
        opts = options[name]
        o = opts[int(pick[c])]
        choice[name] = o.type
        total += o.bytes
        delta += o.delta
        c -= math.ceil((o.bytes - opts[0].bytes) / unit)
    assert total <= budget, "the rounded-up costs guarantee this"
    choice = {n: choice[n] for n in names}
    return Solution(choice, total, reference_kld + delta, dict(options))
