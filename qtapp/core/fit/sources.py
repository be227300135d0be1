"""What a plan knows of a model besides the controls, read the same way for the Fit page and
``quantlens plan``: the header, the user's recipes, the measured quality order and speeds.

Reading them touches the disk and the results store, so the window does it once per opened
model, off the GUI thread; replanning (a slider move) reuses them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qtapp.core.fit.devices import Device, parse_memory_size
from qtapp.core.fit.exact import ManyWeights
from qtapp.core.fit.host_memory import HostLoad, HostRepack
from qtapp.core.fit.measured_speed import MeasuredSpeeds, measured_speeds
from qtapp.core.fit.plan import PlanInputs, Weights, make_plan, targets_for
from qtapp.core.fit.plan_checks import PlanCheck, plan_checks
from qtapp.core.fit.quality_order import QualityOrder, measured_order
from qtapp.core.fit.quants import Recipe
from qtapp.core.gguf.model import ModelInfo, read_model

log = logging.getLogger(__name__)


@dataclass
class PlanSources:
    """One model's header and what the user measured or defined for it."""

    model: ModelInfo
    recipes: dict[str, Recipe]
    quality: QualityOrder  # empty: llama.cpp's published order
    speeds: MeasuredSpeeds
    #: llama.cpp's exact weights of the model's targets found in the cache (dozens of small
    #: files: read here, off the GUI thread, not when the page opens the model)
    weights: dict[str, Weights] = field(default_factory=dict)
    #: what the installed llama.cpp build copies into extra CPU buffers
    repack: HostRepack = field(default_factory=HostRepack)
    #: how far the plans of the user's own evaluations of this model were off, per device
    checks: list[PlanCheck] = field(default_factory=list)


def user_recipes(warn: Callable[[str], object] = log.warning) -> dict[str, Recipe]:
    """The user's saved recipes; an unreadable config folder costs them, not the plan."""
    from qtapp.core.fit.recipes_store import load_user_recipes

    try:
        return load_user_recipes()
    except OSError as exc:
        warn(f"could not read your recipes: {exc}")
        return {}


def read_plan_sources(
    path: str | Path,
    measured_quality: bool = True,
    warn: Callable[[str], object] = log.warning,
    warm_up: bool = True,
) -> PlanSources:
    """Read ``path``'s header (a bad file raises QuantLensError with one clear line), then the
    recipes, the quality order (llama.cpp's published one when ``measured_quality`` is off)
    and the measured speeds from the results store. ``warm_up`` makes a first plan (for the
    window: its first plan then only reads the model's memos)."""
    model = read_model(path)
    recipes = user_recipes(warn)
    quality = measured_order(model, recipes) if measured_quality else QualityOrder()
    cached = ManyWeights(model, targets_for(model, recipes, quality), recipes).weights
    sources = PlanSources(
        model,
        recipes,
        quality,
        measured_speeds(model, recipes),
        cached,
        build_repack(),
        plan_checks(model, recipes),
    )
    # A first plan here fills the model's memos (weight estimates, per-layer sums: ~100 ms for a
    # 262k-vocabulary model), so the caller's first plan on the GUI thread only reads them.
    if warm_up:
        load = HostLoad("mmap", sources.repack)  # the window plans with the build's repacking
        make_plan(PlanInputs(model, weights=cached, quality=quality, recipes=recipes, load=load))
    return sources


@functools.cache
def build_repack() -> HostRepack:
    """The installed llama.cpp build's CPU features (its system info, probed once in a worker
    child and cached on disk per install): they decide which weights it repacks."""
    from qtapp.core.hardware.llama_build import get_llama_build

    return HostRepack.from_system_info(get_llama_build().system_info)


def what_if_host(detected: Device, ram: str | None) -> Device:
    """The detected host, or one with ``ram`` of memory (one size such as ``256GiB``, the same
    for ``--ram`` and the Fit page's box); the bandwidth guess stays the detected one's."""
    if not ram or not ram.strip():
        return detected
    size = parse_memory_size(ram.strip(), "host RAM")
    return Device("CPU", size, size, detected.bandwidth, False, "what-if host RAM")
