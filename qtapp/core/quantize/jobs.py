"""The parent side of quantization jobs, shared by the CLI and the window (no Qt, no llama.cpp).

Naming: ``<model-stem>-<TYPE>.gguf`` (the recipe's name for recipes) in the output folder.
A job writes ``<name>.part`` (keep_split: ``<name-without-.gguf>.part-0000i-of-0000n.gguf``) and
renames on success. Whatever ends a job early (a failure, a cancel, a killed child), the parent
calls :func:`cleanup` so nothing that looks finished, or half-written, is left behind.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.jobs.events import Cancelled, Event, Finished
from qtapp.core.jobs.job import Job, JobHooks, JobSpec, run_to_end
from qtapp.core.quantize.outputs import (  # noqa: F401 - re-exported for the page and tests
    METADATA_MARGIN,
    check_output_free,
    final_paths,
    glob_escape,
    model_stem,
    output_path,
    part_paths,
    part_prefix,
    remove_partials,
)

log = logging.getLogger(__name__)


@dataclass
class QuantizeOptions:
    """Everything a quantize job takes besides source and target (CLI flags, page options)."""

    out_dir: str | None = None
    allow_requantize: bool = False
    imatrix: str | None = None
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None
    leave_output_tensor: bool = False
    pure: bool = False
    keep_split: bool = False
    nthread: int = 0
    overwrite: bool = False
    extra_rules: list[tuple[str, str]] = field(default_factory=list)
    user_recipes: list[dict[str, Any]] = field(default_factory=list)

    def validate(self) -> None:
        """Refuse option values llama.cpp would reject or misread, before any job starts."""
        from qtapp.core.fit.quants import ggml_type_id

        named = [
            ("--output-type", self.output_tensor_type),
            ("--embd-type", self.token_embedding_type),
            *((f"--tensor-type {pattern}=", t) for pattern, t in self.extra_rules),
        ]
        for flag, type_name in named:
            if not type_name:
                continue
            try:
                ggml_type_id(type_name)
            except ValueError:
                raise QuantLensError(
                    f"{flag}: unknown tensor type {type_name!r}.",
                    "Use a ggml type such as Q8_0, Q6_K, Q4_K, F16.",
                ) from None
        for pattern, _t in self.extra_rules:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise QuantLensError(
                    f"--tensor-type: {pattern!r} is not a valid regular expression ({exc}).",
                    "Write it like attn_v=Q8_0 or 'ffn_down.*=Q6_K'.",
                ) from None
        if self.nthread < 0:
            raise QuantLensError(
                f"--threads {self.nthread} is negative.", "Use 0 (all cores) or a positive count."
            )


def default_out_dir() -> Path:
    try:
        from qtapp.core.app.settings import Settings

        return Path(Settings.load().output_dir)
    except Exception:  # noqa: BLE001 - settings are optional here
        from qtapp.core.app.paths import app_paths

        return app_paths().models / "quants"


def quantize_spec(model: str | Path, target: str, options: QuantizeOptions) -> JobSpec:
    """The job spec for one output. ``out`` is the final path (keep_split: its name stem)."""
    out_dir = Path(options.out_dir) if options.out_dir else default_out_dir()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the child reports the missing folder clearly
        log.debug("Could not create %s: %s", out_dir, exc)
    params: dict[str, Any] = {
        "model": str(model),
        "target": target,
        "out": str(output_path(model, target, out_dir)),
        "allow_requantize": options.allow_requantize,
        "imatrix": options.imatrix,
        "output_tensor_type": options.output_tensor_type,
        "token_embedding_type": options.token_embedding_type,
        "leave_output_tensor": options.leave_output_tensor,
        "pure": options.pure,
        "keep_split": options.keep_split,
        "nthread": options.nthread,
        "overwrite": options.overwrite,
        "extra_rules": [list(r) for r in options.extra_rules],
        "user_recipes": options.user_recipes,
    }
    return JobSpec("quantize", params)


def cleanup(spec: JobSpec, terminal: Event | None) -> list[Path]:
    """After a job that did not finish, remove its partial files (the child may be dead)."""
    if isinstance(terminal, Finished) or spec.kind != "quantize":
        return []
    return remove_partials(Path(spec.params["out"]), spec.params.get("keep_split"))


class QuantizeRecord(JobHooks):
    """One quantize job in the results store, and its clean-up; shared by the CLI and the window.

    :meth:`begin` stores the run as "running" against its source before the child starts, so
    a QuantLens that is killed mid-job leaves a run that the next start marks "interrupted".
    :meth:`finish` ends it; a finished run then describes its output file (that is the model it
    made), with the source in its settings. A store problem is logged, never raised.
    """

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.run_id: int | None = None

    def begin(self) -> None:
        p = self.spec.params
        settings = {k: v for k, v in p.items() if k not in ("user_recipes",)}
        settings["source"] = p["model"]
        try:
            from qtapp.core.results.store import ResultsStore

            with ResultsStore.open() as store:
                self.run_id = store.begin_run(
                    "quantize", p["model"], str(p["target"]), recipe=p["target"], settings=settings
                )
        except Exception as exc:  # noqa: BLE001 - a results-store problem must not stop the job
            log.warning("Could not record the quantize run: %s", exc)

    def end(self, terminal: Event) -> None:
        """Remove partial files of a job that did not finish, then store its outcome."""
        removed = cleanup(self.spec, terminal)
        if removed:
            log.info("Removed partial files: %s", ", ".join(map(str, removed)))
        self.finish(terminal)

    def finish(self, terminal: Event) -> int | None:
        if self.run_id is None:
            return None
        try:
            from qtapp.core.results.store import ResultsStore

            with ResultsStore.open() as store:
                if isinstance(terminal, Finished):
                    result = terminal.result
                    keys = ("bytes", "tensor_bytes", "bpw", "seconds", "path", "ftype", "target")
                    if result.get("path"):
                        store.retarget_run(self.run_id, result["path"])
                    store.finish_run(
                        self.run_id, "finished", metrics={k: result.get(k) for k in keys}
                    )
                elif isinstance(terminal, Cancelled):
                    store.finish_run(self.run_id, "cancelled", message="Cancelled by the user.")
                else:
                    message = getattr(terminal, "message", "")
                    store.finish_run(self.run_id, "failed", message=message)
        except Exception as exc:  # noqa: BLE001 - a results-store problem must not fail the job
            log.warning("Could not record the quantize result: %s", exc)
            return None
        return self.run_id


def run_quantize(
    spec: JobSpec,
    on_event: Callable[[Event], Any] | None = None,
    on_start: Callable[[Job], Any] | None = None,
    record: bool = False,
) -> Event:
    """Run one quantize job to its end in this thread (CLI, tests); always cleans up.

    With ``record``, the run is in the results store from its start (see
    :class:`QuantizeRecord`). Returns the terminal event. ``on_start`` gets the :class:`Job`
    (to cancel it from elsewhere).
    """
    hooks = QuantizeRecord(spec) if record else None
    if hooks is not None:
        hooks.begin()
    end = hooks.end if hooks is not None else (lambda terminal: cleanup(spec, terminal))
    return run_to_end(spec, on_event, on_start, end)
