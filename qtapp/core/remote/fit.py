"""Plan every GGUF model of a repo from its header alone, and recommend one file.

Each model's header is laid down locally (:mod:`qtapp.core.remote.headers`) and planned by the
caller's ``inputs_for(path)``, the same function that builds a local file's plan inputs (the CLI
passes its ``build_inputs``, the window its Fit page settings): the plan of a remote file is the
plan of that file on disk. The table's badge is the file as it is (the plan's ``current`` row);
the recommendation follows the planner's rule: the best file that fits on the GPUs, else the
best partial plan within half of the fastest one's speed, else the best that fits in RAM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.fit.plan import (
    Plan,
    PlanInputs,
    PlanRow,
    current_weights,
    largest_context,
    make_plan,
    plan_row,
)
from qtapp.core.remote.headers import ReadStats, fetch_model_headers
from qtapp.core.remote.listing import RemoteModel, RepoListing

__all__ = ["FileFit", "RepoPlan", "add_exact_memory", "plan_repo", "recommend"]

GIB = 1 << 30


@dataclass
class FileFit:
    """One file (or split set) of the repo and its plan; ``error`` when it cannot be planned."""

    model: RemoteModel
    header: Path | None = None
    plan: Plan | None = None
    inputs: PlanInputs | None = None
    error: str | None = None

    @property
    def current(self) -> PlanRow | None:
        return self.plan.row("current") if self.plan is not None else None

    @property
    def verdict(self) -> str:
        """ "fits" | "partial" | "no", or "error"."""
        row = self.current
        return row.verdict if row is not None else "error"

    @property
    def file_type(self) -> str:
        return self.plan.model.file_type if self.plan is not None else ""

    def rank(self) -> tuple[float, float]:
        """Higher is better: the type's place in the quality order (yours where you measured
        it, else llama.cpp's published one), then bits per weight."""
        if self.plan is None or self.inputs is None:
            return (-2.0, 0.0)
        return (self.inputs.rank(self.file_type), self.plan.model.bpw)

    def to_dict(self) -> dict[str, Any]:
        row = self.current
        out: dict[str, Any] = {
            "file": self.model.name,
            "files": [
                {"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.model.files
            ],
            "download_bytes": self.model.size,
            "shards": self.model.shards,
            "verdict": self.verdict,
            "error": self.error,
        }
        if row is not None and self.plan is not None:
            out.update(
                file_type=self.file_type,
                bpw=round(self.plan.model.bpw, 3),
                gpu_bytes=row.gpu_bytes,
                host_bytes=row.host_bytes,
                n_gpu_layers=row.n_gpu_layers,
                note=row.note,
                tg_tps=round(row.tg_tps, 2),
                pp_tps=round(row.pp_tps, 1),
                llama_args=row.llama_args,
                plan=self.plan.to_dict(),
            )
        return out


@dataclass
class RepoPlan:
    listing: RepoListing
    files: list[FileFit]
    recommended: str | None
    why: str
    stats: ReadStats = field(default_factory=ReadStats)

    def file(self, name: str) -> FileFit | None:
        return next((f for f in self.files if f.model.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo": self.listing.repo_id,
            "revision": self.listing.ref.revision,
            "commit": self.listing.commit,
            "gated": self.listing.gated,
            "recommended": self.recommended,
            "why": self.why,
            "header_bytes_read": self.stats.bytes,
            "range_requests": self.stats.requests,
            "skipped": self.listing.skipped,
            "files": [f.to_dict() for f in self.files],
        }


def add_exact_memory(inp: PlanInputs) -> str | None:
    """llama.cpp's own KV cache and compute sizes at the plan's settings: a no-alloc load of the
    header copy in a child (cached per file; about 0.1-0.3 s with the lean copy). Returns why
    they are unavailable (the instant estimates stay), or None."""
    from qtapp.core.fit.exact import exact_memory

    try:
        inp.exact[inp.settings] = exact_memory(inp.model, inp.settings)
    except QuantLensError as exc:
        return exc.message
    return None


def plan_file(
    listing: RepoListing,
    model: RemoteModel,
    inputs_for: Callable[[Path], PlanInputs],
    token: str | None = None,
    stats: ReadStats | None = None,
    targets: list[str] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> FileFit:
    """Read one model's headers and plan it. A file that is no usable GGUF model gives a
    FileFit with ``error``; a network, access or disk problem raises QuantLensError."""
    header = fetch_model_headers(listing, model, token, stats, should_stop)  # raises: no header
    try:
        inp = inputs_for(header)
        plan = make_plan(inp, targets)
    except QuantLensError as exc:
        for f in model.files:  # nothing partial left: a copy that cannot be planned goes
            (header.parent / f.name).unlink(missing_ok=True)
        return FileFit(model, error=str(exc))
    return FileFit(model, header, plan, inp)


def plan_repo(
    listing: RepoListing,
    inputs_for: Callable[[Path], PlanInputs],
    token: str | None = None,
    targets: list[str] | None = None,
    progress: Callable[[int, int, str], object] | None = None,
    on_file: Callable[[FileFit], object] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> RepoPlan:
    """Plan every model of ``listing`` (smallest first), then recommend one."""
    stats = ReadStats()
    fits: list[FileFit] = []
    total = len(listing.models)
    for i, model in enumerate(listing.models):
        if should_stop():
            break
        if progress is not None:
            progress(i, total, model.name)
        try:
            fit = plan_file(listing, model, inputs_for, token, stats, targets, should_stop)
        except QuantLensError as exc:
            if not _is_content_error(exc):
                raise
            fit = FileFit(model, error=str(exc))
        fits.append(fit)
        if on_file is not None:
            on_file(fit)
    best, why = recommend(fits)
    return RepoPlan(listing, fits, best, why, stats)


def _is_content_error(exc: QuantLensError) -> bool:
    """A file's own problem (not GGUF, bad header, missing shards): its row says so, the other
    files are still planned. Access and network problems stop the whole plan."""
    return "cannot be read as a GGUF model" in exc.message or "lacks part" in exc.message


def _gib(b: float) -> str:
    return f"{b / GIB:.1f} GiB" if b >= GIB else f"{b / (1 << 20):.0f} MiB"


def _need(fit: FileFit) -> int:
    """What the file needs on the GPUs to run all on them: its plan on GPUs with room to
    spare (a partial plan's own GPU figure counts only the layers that fit)."""
    assert fit.inputs is not None and fit.plan is not None
    inp = fit.inputs
    roomy = replace(inp, gpus=[replace(d, free_bytes=1 << 60) for d in inp.gpus])
    return plan_row(roomy, current_weights(fit.plan.model)).gpu_bytes


def _context(fit: FileFit, verdict: str) -> int | None:
    """The largest context at which the file keeps ``verdict`` (the planner's search)."""
    if fit.inputs is None or fit.plan is None:
        return None
    inp = replace(fit.inputs, weights={**fit.inputs.weights})
    inp.weights["current"] = current_weights(fit.plan.model)
    return largest_context(inp, "current", verdict)


def recommend(fits: list[FileFit]) -> tuple[str | None, str]:
    """The file to download and why, in the Fit page's words."""
    planned = [f for f in fits if f.current is not None and f.file_type != "F32"]
    planned.sort(key=lambda f: f.rank(), reverse=True)
    if not planned:
        return None, "No file of the repo could be planned."
    inp = planned[0].inputs
    assert inp is not None
    gpus = inp.gpus
    if not gpus:
        best = next((f for f in planned if f.verdict != "no"), None)
        if best is None:
            return None, "No file fits in the host's memory at this context."
        row = best.current
        assert row is not None
        return best.model.name, (
            f"{best.model.name} ({best.file_type}): {_gib(row.host_bytes)} of RAM on the CPU, "
            f"about {row.tg_tps:.1f} tokens/s predicted (no GPU in this plan)."
        )
    fitting = [f for f in planned if f.verdict == "fits"]
    if fitting:
        best = fitting[0]
        row = best.current
        assert row is not None
        budget = sum(u.budget_bytes for u in row.devices if u.device != "CPU")
        plural = "s" if len(gpus) > 1 else ""
        why = (
            f"{best.model.name} ({best.file_type}): {_gib(row.gpu_bytes)} of {_gib(budget)} "
            f"usable on the GPU{plural}"
        )
        above = [f for f in planned if f.rank() > best.rank()]
        if above:
            better = above[-1]
            why += f"; {better.model.name} ({better.file_type}) needs {_gib(_need(better))}"
        ctx = _context(best, "fits")
        if ctx:
            why += f"; it still fits at up to {ctx:,} tokens of context"
        return best.model.name, why + "."
    partial = [f for f in planned if f.verdict == "partial"]
    if partial:
        fastest = max(f.current.predicted_tg_tps for f in partial if f.current is not None)
        best = next(
            f for f in partial if f.current is not None
            and f.current.predicted_tg_tps >= 0.5 * fastest
        )  # fmt: skip
        row = best.current
        assert row is not None
        return best.model.name, (
            f"No file fits fully on the GPUs; best partial plan: {best.model.name} "
            f"({best.file_type}) with {row.note or 'partial offload'}, "
            f"{_gib(row.host_bytes)} of host RAM, about {row.tg_tps:.1f} tokens/s predicted."
        )
    return None, "No file fits, even with partial offload, at this context and hardware."
