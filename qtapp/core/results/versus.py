"""Model vs model on task accuracy: paired differences and one-sentence verdicts.

Two models are compared only on the same tasks: the same task file (its sha256), the same
format, in the same order. llama-perplexity draws tasks one after the other from a fixed seed,
so the first k tasks of a 400-task run are the tasks of a k-task run: a pair is compared on the
tasks both answered (the shorter run's count). KL divergence and perplexity never rank two
models here (each is relative to its own base or tokenizer).

The paired difference of accuracies is ``(b - c) / n`` where ``b`` counts the tasks only A got
right and ``c`` those only B got right. McNemar's exact test gives the p-value of "no
difference": given the ``b + c`` tasks where the two disagree, ``b`` is binomial with ``p = 1/2``.
The 95% interval inverts the same test (Clopper-Pearson for ``b / (b + c)``, scaled to points),
so the interval leaves out 0 exactly when p < 0.05 and the sentence never contradicts the test
(a Wald interval would call 5 of 5 disagreements a win while the exact test says p = 0.06).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from qtapp.core.evaluate.tasks import KIND_NAMES
from qtapp.core.results.store import RunRecord

__all__ = [
    "PairedDiff",
    "TaskScore",
    "best_per_model",
    "paired_diff",
    "task_scores",
    "task_set_name",
    "verdict",
]


@dataclass(frozen=True)
class TaskScore:
    """One task-accuracy run of one model file."""

    run_id: int
    model: str  # the model's name (general.name), shared by its quants
    label: str  # the quant ("Q4_K_M", "F16", a recipe)
    path: str
    fingerprint: str
    kind: str  # "hellaswag" | "winogrande" | "mc"
    tasks_sha256: str
    tasks_file: str
    answers: str  # "1"/"0" per task, in scoring order
    partial: bool
    created: float

    @property
    def task_set(self) -> tuple[str, str]:
        return (self.kind, self.tasks_sha256)

    @property
    def n(self) -> int:
        return len(self.answers)

    @property
    def correct(self) -> int:
        return self.answers.count("1")

    @property
    def acc(self) -> float:
        return 100.0 * self.correct / self.n if self.n else float("nan")

    def interval(self) -> tuple[float, float]:
        """The 95% Wilson interval in percent, as llama-perplexity prints it."""
        from qtapp.core.evaluate.tasks import wilson

        lo, hi = wilson(self.correct, self.n)
        return 100 * lo, 100 * hi

    def to_dict(self) -> dict[str, object]:
        lo, hi = self.interval()
        return {
            "run_id": self.run_id,
            "model": self.model,
            "label": self.label,
            "path": self.path,
            "kind": self.kind,
            "tasks_sha256": self.tasks_sha256,
            "tasks_scored": self.n,
            "correct": self.correct,
            "acc": self.acc,
            "acc_lo": lo,
            "acc_hi": hi,
            "partial": self.partial,
        }


def task_scores(runs: Iterable[RunRecord]) -> list[TaskScore]:
    """Every task run that scored at least one task and says which task file it used."""
    out = []
    for r in runs:
        answers = r.metrics.get("answers")
        sha = r.settings.get("tasks_sha256")
        if r.kind != "tasks" or not isinstance(answers, str) or not answers or not sha:
            continue
        if set(answers) - {"0", "1"}:
            continue
        out.append(
            TaskScore(
                run_id=r.id,
                model=r.model_name,
                label=r.label,
                path=r.model_path,
                fingerprint=r.model_fingerprint,
                kind=str(r.settings.get("kind") or r.metrics.get("kind") or "hellaswag"),
                tasks_sha256=str(sha),
                tasks_file=str(r.settings.get("tasks") or ""),
                answers=answers,
                partial=bool(r.metrics.get("partial")) or r.state != "finished",
                created=r.created,
            )
        )
    return out


def task_set_name(score: TaskScore, n: int | None = None) -> str:
    """``HellaSwag, 400 tasks (file hellaswag_val_full.txt, sha256 1a2b3c4d)``."""
    from pathlib import PurePath

    kind = KIND_NAMES.get(score.kind, score.kind)
    count = score.n if n is None else n
    name = PurePath(score.tasks_file).name if score.tasks_file else "task file"
    return f"{kind}, {count} tasks ({name}, sha256 {score.tasks_sha256[:8]})"


@dataclass(frozen=True)
class PairedDiff:
    """A minus B in accuracy points on the ``n`` tasks both answered."""

    n: int
    only_a: int  # tasks only A got right
    only_b: int  # tasks only B got right
    diff: float  # percentage points
    lo: float
    hi: float
    p_value: float  # McNemar's exact test

    @property
    def significant(self) -> bool:
        """McNemar's exact test at 5% (the interval then leaves out 0)."""
        return self.n > 0 and self.p_value < 0.05

    def to_dict(self) -> dict[str, float | int]:
        return {
            "tasks": self.n,
            "only_a_right": self.only_a,
            "only_b_right": self.only_b,
            "diff_points": self.diff,
            "ci_lo": self.lo,
            "ci_hi": self.hi,
            "mcnemar_p": self.p_value,
        }


def paired_diff(a: str, b: str) -> PairedDiff:
    """The paired difference of two answer strings on their common prefix (the same tasks)."""
    n = min(len(a), len(b))
    only_a = sum(1 for x, y in zip(a[:n], b[:n], strict=True) if x == "1" and y == "0")
    only_b = sum(1 for x, y in zip(a[:n], b[:n], strict=True) if x == "0" and y == "1")
    if n == 0:
        return PairedDiff(0, 0, 0, float("nan"), float("nan"), float("nan"), 1.0)
    n_d = only_a + only_b
    lo_p, hi_p = clopper_pearson(only_a, n_d) if n_d else (0.5, 0.5)
    scale = 100 * n_d / n
    return PairedDiff(
        n, only_a, only_b, 100 * (only_a - only_b) / n, scale * (2 * lo_p - 1),
        scale * (2 * hi_p - 1), mcnemar_exact(only_a, only_b),
    )  # fmt: skip


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Bin(n, p), summed in log space (n up to tens of thousands)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq, lg = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return min(1.0, sum(
        math.exp(lg - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
        for i in range(k + 1)
    ))  # fmt: skip


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a proportion k / n, by bisection."""

    def solve(target: float, cdf_at: int) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if _binom_cdf(cdf_at, n, mid) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(1 - alpha / 2, k - 1)  # P(X >= k | p) = alpha / 2
    upper = 1.0 if k == n else solve(alpha / 2, k)  # P(X <= k | p) = alpha / 2
    return lower, upper


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the binomial test of b successes in b + c at 1/2."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def _who(score: TaskScore) -> str:
    return f"{score.model} at {score.label}" if score.label else score.model


def verdict(a: TaskScore, b: TaskScore, d: PairedDiff | None = None) -> str:
    """One sentence: who wins by how much, or that the difference is within noise."""
    d = d or paired_diff(a.answers, b.answers)
    if d.n == 0:
        return f"{_who(a)} and {_who(b)} have no task in common."
    ci = f"95% CI {d.lo:.1f} to {d.hi:.1f}"
    if d.significant:
        win, lose = (a, b) if d.diff > 0 else (b, a)
        lo, hi = (d.lo, d.hi) if d.diff > 0 else (-d.hi, -d.lo)
        return (
            f"{_who(win)} beats {_who(lose)} by {abs(d.diff):.1f} points "
            f"(95% CI {lo:.1f} to {hi:.1f}, {d.n} tasks)."
        )
    return (
        f"The difference between {_who(a)} and {_who(b)} is within noise "
        f"({d.diff:+.1f} points, {ci}, {d.n} tasks)."
    )


def best_per_model(
    scores: Sequence[TaskScore], fits: dict[int, bool] | None = None
) -> dict[str, TaskScore]:
    """Per model, on one task set: the most accurate quant among the runs that fit (``fits``:
    run id -> fits the budget; None = no budget). Complete runs beat partial ones; ties go to
    the run that scored more tasks, then the newest."""
    best: dict[str, TaskScore] = {}

    def key(s: TaskScore) -> tuple[bool, float, int, float]:
        return (not s.partial, s.acc, s.n, s.created)

    for s in scores:
        if fits is not None and not fits.get(s.run_id, False):
            continue
        if s.model not in best or key(s) > key(best[s.model]):
            best[s.model] = s
    return best


def main_task_set(scores: Sequence[TaskScore]) -> tuple[str, str] | None:
    """The task set most models were scored on (newest on a tie)."""
    models: dict[tuple[str, str], set[str]] = {}
    newest: dict[tuple[str, str], float] = {}
    for s in scores:
        models.setdefault(s.task_set, set()).add(s.model)
        newest[s.task_set] = max(newest.get(s.task_set, 0.0), s.created)
    if not models:
        return None
    return max(models, key=lambda k: (len(models[k]), newest[k]))


@dataclass(frozen=True)
class ModelsVerdict:
    """Model vs model on one task set at a budget: each model's best fitting quant, the
    models with no fitting scored quant, and one verdict per pair."""

    task_set: str
    best: list[TaskScore]
    nothing_fits: list[str]
    pairs: list[tuple[TaskScore, TaskScore, PairedDiff, str]]


def models_verdict(
    scores: Sequence[TaskScore],
    need_bytes: dict[int, float | None],
    budget_bytes: float | None,
) -> ModelsVerdict | None:
    """On the task set most models share: per model the best quant that fits ``budget_bytes``
    (``need_bytes``: run id -> memory it needs; None budget: every run counts), then the paired
    verdict of every pair, strongest model first. None when no task set has two models."""
    main = main_task_set(scores)
    if main is None:
        return None
    mine = [s for s in scores if s.task_set == main]
    if len({s.model for s in mine}) < 2:
        return None
    fits = None
    if budget_bytes is not None:
        fits = {
            s.run_id: (need := need_bytes.get(s.run_id)) is not None and need <= budget_bytes
            for s in mine
        }
    best = best_per_model(mine, fits)
    order = sorted(best.values(), key=lambda s: -s.acc)
    nothing = sorted({s.model for s in mine} - set(best))
    pairs = []
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            d = paired_diff(a.answers, b.answers)
            pairs.append((a, b, d, verdict(a, b, d)))
    n = min((s.n for s in order), default=0)
    return ModelsVerdict(task_set_name(mine[0], n), order, nothing, pairs)
