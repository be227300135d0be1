"""Which quant type is better: the user's own measurements first, llama.cpp's published order else.

The fit planner ranks candidates with a :class:`QualityOrder`. Without measurements it is
llama.cpp's published order (:data:`qtapp.core.fit.quants.QUALITY_ORDER`; a user recipe sits just
above its base type, as the built-in recipes do). With evaluations of at least two types of the
same model in the results store, those types are re-ordered among themselves by measured mean KLD
(lower is better; perplexity when fewer than two have a KLD): they swap the places they hold in
the published order, so every unmeasured type keeps its place relative to the others.

:func:`measured_order` reads the store once (call it when a model is opened, not per replan).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtapp.core.fit.quants import ALIASES, QUANT_TYPES, Recipe, quality_rank, split_quant_name

log = logging.getLogger(__name__)

METRIC_NAMES = {"kld": "mean KLD", "ppl": "PPL"}


@dataclass(frozen=True)
class Measurement:
    type: str
    metric: str  # "kld" | "ppl"
    value: float
    run_id: int
    label: str


def published_rank(name: str, recipes: Mapping[str, Recipe] | None = None) -> float:
    """llama.cpp's order (higher is better); a user recipe just above its base type."""
    rank = quality_rank(name)
    if rank >= 0:
        return float(rank)
    recipe = (recipes or {}).get(name)
    if recipe is not None:
        return quality_rank(recipe.base) + 0.5
    return -1.0


@dataclass
class QualityOrder:
    """Ranks quant types (higher is better), with measured types re-ordered among themselves."""

    measured: dict[str, Measurement] = field(default_factory=dict)
    metric: str = ""  # the metric that ordered ``measured`` ("" when nothing is measured)
    recipes: dict[str, Recipe] = field(default_factory=dict)
    _ranks: dict[str, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if len(self.measured) < 2:  # one measurement orders nothing
            self.measured, self.metric = {}, ""
        slots = sorted(published_rank(t, self.recipes) for t in self.measured)
        best_last = sorted(self.measured.values(), key=lambda x: (-x.value, x.type))
        self._ranks = {m.type: slot for m, slot in zip(best_last, slots, strict=True)}

    def rank(self, name: str) -> float:
        hit = self._ranks.get(ALIASES.get(name, name))
        return hit if hit is not None else published_rank(name, self.recipes)

    def is_measured(self, name: str) -> bool:
        return name in self._ranks

    @property
    def source(self) -> str:
        return "measured" if self._ranks else "published"

    def describe(self, names: Iterable[str]) -> str:
        """``"mean KLD Q4_K_M 0.0213 < Q5_K_M 0.0340"`` for the measured ``names``, best first."""
        ms = sorted(
            (self.measured[n] for n in dict.fromkeys(names) if n in self.measured),
            key=lambda x: x.value,
        )
        if not ms:
            return ""
        return f"{METRIC_NAMES[self.metric]} " + " < ".join(f"{x.type} {x.value:.4g}" for x in ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "metric": self.metric,
            "measured": {
                t: {"metric": m.metric, "value": m.value, "run_id": m.run_id}
                for t, m in self.measured.items()
            },
        }


# -- reading the results store -----------------------------------------------------------------


def _split_type(text: str, recipes: Mapping[str, Recipe]) -> tuple[str, str | None]:
    return split_quant_name(text, dict(recipes))


def type_from_name(text: str, recipes: Mapping[str, Recipe] | None = None) -> str | None:
    """``gemma-3-270m-it-Q4_K_M.gguf`` -> ``Q4_K_M`` (also a bare ``Q4_K_M`` or a recipe name)."""
    return _split_type(text, recipes or {})[1]


def model_stem(path: str | Path, recipes: Mapping[str, Recipe] | None = None) -> str:
    """The file name without directory, ``.gguf``, split and type suffixes, lower case."""
    return _split_type(str(path), recipes or {})[0].lower()


def _run_type(run: Any, recipes: Mapping[str, Recipe]) -> str | None:
    """The quant type an evaluated file has: its recipe, its name, else its header."""
    metrics = run.metrics if isinstance(run.metrics, dict) else {}
    for text in (run.recipe, metrics.get("target"), run.label, run.model_path):
        if isinstance(text, str) and text:
            t = type_from_name(text, recipes)
            if t is not None:
                return t
    try:  # a renamed file: its header knows (milliseconds, never the weights)
        from qtapp.core.gguf.fingerprint import model_info

        path = Path(run.model_path)
        if path.is_file():
            ft = model_info(path).file_type
            return ft if ft in QUANT_TYPES else None
    except Exception as exc:  # noqa: BLE001 - an unreadable file is just unmeasured
        log.debug("no type for run %s: %s", getattr(run, "id", "?"), exc)
    return None


def _same_model(run: Any, model: Any, recipes: Mapping[str, Recipe]) -> bool:
    """The run evaluated a quant of ``model``'s base model (by name, fingerprint or file name)."""
    if run.model_fingerprint and run.model_fingerprint == getattr(model, "fingerprint", None):
        return True
    name = (getattr(model, "name", "") or "").strip().lower()
    if name and (run.model_name or "").strip().lower() == name:
        return True
    settings = run.settings if isinstance(run.settings, dict) else {}
    base = settings.get("base")
    path = Path(str(model.path))
    if isinstance(base, str) and base:
        try:
            if Path(base).resolve() == path.resolve():
                return True
        except OSError:
            pass
    stem = model_stem(path, recipes)
    if not stem:
        return False
    others = [run.model_path, base if isinstance(base, str) else ""]
    return any(o and model_stem(o, recipes) == stem for o in others)


def _finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = float(value)
        return v if math.isfinite(v) and v >= 0 else None
    return None


def order_from_runs(
    runs: Iterable[Any], model: Any, recipes: Mapping[str, Recipe] | None = None
) -> QualityOrder:
    """The quality order for ``model`` from stored runs (any iterable of ``RunRecord``)."""
    recipes = dict(recipes or {})
    latest: dict[str, Any] = {}  # type -> its newest usable eval run
    for run in runs:
        if run.kind != "eval" or run.state not in ("finished", "partial"):
            continue
        m = run.metrics if isinstance(run.metrics, dict) else {}
        if _finite(m.get("kld_mean")) is None and _finite(m.get("ppl")) is None:
            continue
        if not _same_model(run, model, recipes):
            continue
        t = _run_type(run, recipes)
        if t is None or t in ("F32", "F16", "BF16"):
            continue
        old = latest.get(t)
        if old is None or (run.created, run.id) >= (old.created, old.id):
            latest[t] = run
    for metric, key in (("kld", "kld_mean"), ("ppl", "ppl")):
        values = {t: _finite(r.metrics.get(key)) for t, r in latest.items()}
        found = {
            t: Measurement(t, metric, v, int(latest[t].id), latest[t].label)
            for t, v in values.items()
            if v is not None
        }
        if len(found) >= 2:
            return QualityOrder(found, metric, recipes)
    return QualityOrder(recipes=recipes)


def stored_eval_runs(what: str) -> list[Any] | None:
    """Every eval run in the results store; None (logged, naming ``what``) when it is missing
    or unreadable: no store means no measurements, never an error."""
    try:
        from qtapp.core.results.store import ResultsStore

        with ResultsStore.open() as store:
            return store.list_runs(kind="eval")
    except Exception as exc:  # noqa: BLE001
        log.info("no %s: %s", what, exc)
        return None


def measured_order(model: Any, recipes: Mapping[str, Recipe] | None = None) -> QualityOrder:
    """Read the results store once; the published order when it is missing or unreadable."""
    runs = stored_eval_runs("measured quality order")
    if runs is None:
        return QualityOrder(recipes=dict(recipes or {}))
    return order_from_runs(runs, model, recipes)
