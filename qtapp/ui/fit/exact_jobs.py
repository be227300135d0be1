"""llama.cpp's exact figures for the Fit page, fetched in worker children.

One ``dry_quantize_many`` job sizes every target's weights; one ``dry_load`` job per context
setting gives the KV / compute sizes. Results are cached by :mod:`qtapp.core.fit.exact` and kept
in :attr:`ExactFigureJobs.weights` / :attr:`ExactFigureJobs.exact` for the planner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from qtapp.core.fit import exact as fit_exact
from qtapp.core.fit.kv_model import ContextSettings
from qtapp.core.fit.plan import Weights
from qtapp.core.fit.quants import Recipe
from qtapp.core.gguf.model import ModelInfo
from qtapp.core.jobs.events import Failed, Finished, Progress
from qtapp.ui.common.workers import JobRunner

log = logging.getLogger(__name__)


class ExactFigureJobs(QObject):
    """``updated`` fires when new figures arrived (replan); ``status`` carries a line to show."""

    updated = Signal()
    status = Signal(str)

    def __init__(self, settings: Callable[[], ContextSettings], parent: QObject) -> None:
        super().__init__(parent)
        self._settings = settings  # the context settings the page shows now
        self.model: ModelInfo | None = None
        self.recipes: dict[str, Recipe] = {}
        self.weights: dict[str, Weights] = {}
        self.exact: dict[ContextSettings, fit_exact.ExactFigures] = {}
        self._weights_job: JobRunner | None = None
        self._memory_job: JobRunner | None = None

    def open(self, m: ModelInfo, recipes: dict[str, Recipe], cached: dict[str, Weights]) -> None:
        """A new model: forget the old figures and take the cached weights (read with the
        model's header, off the GUI thread: see core.fit.sources)."""
        self.model = m
        self.recipes = recipes
        self.weights = dict(cached)
        self.exact = {}

    @property
    def sizing_weights(self) -> bool:
        return self._weights_job is not None

    def is_busy(self) -> bool:
        return self._weights_job is not None or self._memory_job is not None

    def request_weights(self, targets: list[str]) -> bool:
        """Size the targets not known yet; True when a job started."""
        m = self.model
        if m is None or self._weights_job is not None:
            return False
        # the cache was read with the model's header: what is not known yet is not cached
        unknown = [t for t in targets if t not in self.weights]
        many = fit_exact.ManyWeights(m, unknown, self.recipes, use_cache=False)
        spec = many.spec()
        if spec is None:
            return False
        # the hooks store each result in the job's thread; the GUI thread only takes them
        runner = JobRunner(spec, self, hooks=many)
        runner.event.connect(self._on_weights_event)
        runner.done.connect(lambda ev, mm=m: self._on_weights_done(mm, many, ev))
        self._weights_job = runner
        runner.start()
        return True

    def _on_weights_event(self, ev: object) -> None:
        if isinstance(ev, Progress):
            self.status.emit(f"Sizing with llama.cpp… {ev.fraction:.0%} ({ev.message})")

    def _on_weights_done(self, m: ModelInfo, many: fit_exact.ManyWeights, ev: object) -> None:
        self._weights_job = None
        if m is not self.model:
            return
        if isinstance(ev, Finished):
            self.weights.update(many.weights)
            self.updated.emit()
        elif isinstance(ev, Failed):
            log.warning("exact weights failed: %s", ev.message)
            self.status.emit(f"llama.cpp could not size the targets: {ev.message}")

    def request_memory(self) -> None:
        """The exact KV / compute sizes of the current settings (one job at a time)."""
        m = self.model
        if m is None:
            return
        cs = self._settings()
        if cs in self.exact:
            return
        hit = fit_exact.cached_memory(m, cs)
        if hit is not None:
            self.exact[cs] = hit
            self.updated.emit()
            return
        if self._memory_job is not None:
            return  # re-asked when this one finishes
        job = fit_exact.MemoryFigures(m, cs)  # stores the figures in the job's thread
        runner = JobRunner(job.spec(), self, hooks=job)
        runner.done.connect(lambda ev, mm=m, c=cs: self._on_memory_done(mm, c, job, ev))
        self._memory_job = runner
        runner.start()

    def _on_memory_done(
        self, m: ModelInfo, cs: ContextSettings, job: fit_exact.MemoryFigures, ev: object
    ) -> None:
        self._memory_job = None
        if m is not self.model:
            return
        if isinstance(ev, Finished) and job.figures is not None:
            self.exact[cs] = job.figures
            self.updated.emit()
        elif isinstance(ev, Failed):
            log.warning("exact KV/compute failed: %s", ev.message)
        if self._settings() != cs:
            self.request_memory()

    def cancel(self) -> None:
        for runner in (self._weights_job, self._memory_job):
            if runner is not None:
                runner.cancel()
                runner.wait()
        self._weights_job = self._memory_job = None
