"""The Quantize page: pick a source, targets and options; jobs run one at a time in a child.

Public hooks for other pages and the demo tour: :meth:`Page.queue`, :meth:`Page.queue_from_fit`,
the ``all_done`` signal and :meth:`Page.on_all_done`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.jobs.events import Cancelled, Event, Finished
from qtapp.core.jobs.job import JobSpec
from qtapp.core.quantize.jobs import (
    QuantizeRecord,
    cleanup,
    default_out_dir,
    final_paths,
    quantize_spec,
)
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.context import AppContext
from qtapp.ui.common.turns import TurnQueue
from qtapp.ui.common.workers import JobRunner
from qtapp.ui.quantize.imatrix_maker import ImatrixMaker
from qtapp.ui.quantize.job_list import JobList
from qtapp.ui.quantize.job_row import JobRow
from qtapp.ui.quantize.options import PathField, QuantizeOptionsPanel
from qtapp.ui.quantize.type_picker import QuantTypePicker

log = logging.getLogger(__name__)


def _source_file_type(path: Path) -> str | None:
    try:
        from qtapp.core.gguf.reader import peek_gguf

        return peek_gguf(path).file_type
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the job itself
        return None


class Page(QWidget):
    key = "quantize"
    title = "Quantize"

    #: every job this page queued has ended (finished, failed or cancelled)
    all_done = Signal()
    #: a job finished: its result dict
    job_finished = Signal(dict)

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._runners: dict[int, JobRunner] = {}  # id(row) -> runner
        self._turns = TurnQueue(self)  # the rows of a queue of jobs, one per turn
        self._adding: list[JobSpec] = []  # queued, their rows not made yet
        self._specs: dict[int, JobSpec] = {}
        self._unsubmitted: set[int] = set()  # id(row): a row made, its job not submitted yet
        self._all_done_callbacks: list[Callable[[], Any]] = []
        #: asked before replacing existing outputs; tests may swap it
        self.confirm_overwrite: Callable[[list[Path]], bool] = self._ask_overwrite
        from qtapp.core.tailor.scan import ScanSettings

        self.tailor_settings = ScanSettings()  # the Tailor dialog's scan (tests make it small)
        self.tailor_dialog: Any = None
        self._build()
        self._load_settings()
        self.ctx.model_changed.connect(self._on_model_changed)
        if ctx.model_path is not None:
            self.set_source(ctx.model_path)

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 12, 16, 12)
        title = QLabel("Quantize")
        title.setObjectName("pageTitle")
        sub = QLabel(
            "Make quantized copies of a model with llama.cpp. Jobs run one at a time in "
            "the background; outputs are named <model>-<TYPE>.gguf."
        )
        sub.setObjectName("muted")
        sub.setWordWrap(True)
        lay.addWidget(title)
        lay.addWidget(sub)
        src_row = QHBoxLayout()
        src_row.addWidget(QLabel("Source model"))
        self.source = PathField(
            "a .gguf model (F16/BF16/F32 is best)",
            False,
            "Source model",
            "GGUF models (*.gguf);;All files (*)",
        )
        self.source.changed.connect(lambda text: self.set_source(text) if text else None)
        src_row.addWidget(self.source, 1)
        self.source_info = QLabel()
        self.source_info.setObjectName("muted")
        src_row.addWidget(self.source_info)
        lay.addLayout(src_row)

        top = QWidget()
        top_lay = QHBoxLayout(top)
        top_lay.setContentsMargins(0, 0, 0, 0)
        left = QVBoxLayout()
        self.picker_label = QLabel("<b>Targets</b>: tick one or more")
        self.picker = QuantTypePicker()
        self.picker.selection_changed.connect(self._on_selection)
        left.addWidget(self.picker_label)
        left.addWidget(self.picker, 1)
        recipes_row = QHBoxLayout()
        self.edit_recipes_button = QPushButton("Recipe editor…")
        self.edit_recipes_button.setToolTip(
            "See what a recipe changes, its size, and save your own"
        )
        self.edit_recipes_button.clicked.connect(self.open_recipe_editor)
        recipes_row.addWidget(self.edit_recipes_button)
        self.tailor_button = QPushButton("Tailor to a budget…")
        self.tailor_button.setToolTip(
            "Measure which tensors of the source matter, then save the best per-tensor mix "
            "for a weights budget as a recipe"
        )
        self.tailor_button.clicked.connect(self.open_tailor)
        recipes_row.addWidget(self.tailor_button)
        recipes_row.addStretch(1)
        left.addLayout(recipes_row)
        top_lay.addLayout(left, 3)
        right = QVBoxLayout()
        self.options = QuantizeOptionsPanel()
        self.options.out_dir_changed.connect(self._save_out_dir)
        right.addWidget(self.options)
        self.imatrix_maker = ImatrixMaker(self.ctx.jobs.submit)
        self.imatrix_maker.chosen.connect(self.options.imatrix.set_text)
        self.options.imatrix.changed.connect(self.imatrix_maker.set_current_file)
        right.addWidget(self.imatrix_maker)
        self.queue_button = QPushButton("Queue 0 jobs")
        self.queue_button.setObjectName("primary")
        self.queue_button.setEnabled(False)
        self.queue_button.setToolTip("Add one job per ticked target to the queue")
        self.queue_button.clicked.connect(self._queue_checked)
        right.addWidget(self.queue_button)
        right.addStretch(1)
        top_lay.addLayout(right, 2)

        self.job_list = JobList()
        self.job_list.row_removed.connect(lambda row: self._specs.pop(id(row), None))

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(self.job_list)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([440, 360])
        lay.addWidget(split, 1)

    # -- settings and source -----------------------------------------------------------------
    def _load_settings(self) -> None:
        self.options.out_dir.edit.setText(str(default_out_dir()))
        self._reload_recipes()

    def _save_out_dir(self, text: str) -> None:
        if not text:
            return
        try:
            from qtapp.core.app.settings import Settings

            settings = Settings.load()
            if settings.output_dir != text:
                settings.output_dir = text
                settings.save()
        except Exception as exc:  # noqa: BLE001 - remembering is a convenience
            log.warning("Could not remember the output folder: %s", exc)

    def _reload_recipes(self) -> None:
        from qtapp.core.fit.recipes_store import load_user_recipes

        self.user_recipes = load_user_recipes()
        self.picker.set_user_recipes(self.user_recipes)

    def _on_model_changed(self, path: object) -> None:
        if path is not None:
            self.set_source(Path(str(path)))

    def set_source(self, path: str | Path, file_type: str | None = None) -> None:
        """Show ``path`` as the source; its header is read off the GUI thread unless the caller
        already knows ``file_type`` (a big vocabulary takes tens of ms to skip)."""
        path = Path(path)
        if self.source.text() != str(path):
            self.source.edit.setText(str(path))
        self.imatrix_maker.set_model(path)
        if file_type is not None or not path.is_file():
            self._show_source_type(path, file_type)
            return
        self.source_info.setText(f"reading… · {path.stat().st_size / 2**20:,.0f} MiB")
        call = BackgroundCall(lambda _call: _source_file_type(path), "quantize-source", self)
        call.finished.connect(lambda file_type: self._show_source_type(path, file_type))
        self._source_call = call.start()

    def _show_source_type(self, path: Path, file_type: object) -> None:
        if self.source.text() != str(path):
            return  # another source was chosen meanwhile
        size = f"{path.stat().st_size / 2**20:,.0f} MiB" if path.is_file() else "missing"
        self.source_info.setText(f"{file_type or '?'} · {size}")
        self.options.set_source_quantized(file_type if isinstance(file_type, str) else None)

    def _on_selection(self, names: list[str]) -> None:
        n = len(names)
        self.picker_label.setText(
            f"<b>Targets</b>: {n} selected" if n else "<b>Targets</b>: tick one or more"
        )
        self.queue_button.setText(f"Queue {n} job{'s' if n != 1 else ''}")
        self.queue_button.setEnabled(n > 0)
        self.imatrix_maker.set_targets(names)

    # -- queueing ----------------------------------------------------------------------------
    def _queue_checked(self) -> None:
        model = self.source.text()
        if not model:
            self.ctx.status.emit("Choose a source model first.")
            return
        self.queue(model, self.picker.checked(), None, self.options.requantize.isChecked())

    def queue(
        self,
        model_path: str | Path,
        types: list[str],
        out_dir: str | Path | None = None,
        requantize: bool = False,
    ) -> list[Path]:
        """Queue one job per type (or recipe); return the output paths, in order."""
        options = self.options.options()
        if out_dir is not None:
            options.out_dir = str(out_dir)
        options.allow_requantize = requantize or options.allow_requantize
        if requantize:  # consent given by the caller (the demo tour): show it in the form too
            self.options.requantize.setChecked(True)
        options.user_recipes = [r.to_dict() for r in self.user_recipes.values()]
        wanted = [quantize_spec(model_path, t, options) for t in types]
        # the same output queued twice would fail later with "already exists": skip it now
        busy = {Path(r.out_path) for r in self.rows if not r.done}
        busy |= {Path(s.params["out"]) for s in self._adding}
        specs, again = [], []
        for spec in wanted:
            out = Path(spec.params["out"])
            (again if out in busy else specs).append(spec)
            busy.add(out)
        if again:
            names = ", ".join(Path(s.params["out"]).name for s in again)
            self.ctx.status.emit(f"Already queued, not added again: {names}")
        existing = [p for s in specs for p in self._finals(s) if p.exists()]
        overwrite = bool(existing) and self.confirm_overwrite(existing)
        outputs = [Path(s.params["out"]) for s in wanted]
        if specs:  # the first job's row now, the others' one per event-loop turn
            self._add_job(specs[0], overwrite)
        for spec in specs[1:]:
            self._adding.append(spec)
            self._turns.add(lambda spec=spec: self._add_job(spec, overwrite))
        return outputs

    def _add_job(self, spec: JobSpec, overwrite: bool) -> None:
        """The row of one queued job, and the job (or the existing file kept)."""
        if spec in self._adding:
            self._adding.remove(spec)
        out = Path(spec.params["out"])
        if any(p.exists() for p in self._finals(spec)) and not overwrite:
            row = self._add_row(spec)
            row.on_done(
                Finished(
                    result={
                        "path": str(out),
                        "bytes": out.stat().st_size if out.exists() else 0,
                        "seconds": 0.0,
                    }
                )
            )
            row.bar.setFormat("kept the existing file")
        else:
            spec.params["overwrite"] = overwrite
            row = self._add_row(spec)
            # the job in a later turn: its child starts at once and competes for the CPU while
            # the window still lays out and paints the new row (a 92 ms stall on busy cores)
            self._unsubmitted.add(id(row))
            self._turns.add(lambda row=row, spec=spec: self._submit(row, spec))
        self.job_list.update_counts()
        self._maybe_all_done()

    def _submit(self, row: JobRow, spec: JobSpec) -> None:
        if id(row) not in self._unsubmitted:  # cancelled before its turn came
            self._maybe_all_done()  # the cancel could not tell: this turn was still pending
            return
        self._unsubmitted.discard(id(row))
        runner = self.ctx.jobs.submit(
            spec, on_start=lambda _r, row=row: row.on_started(), hooks=QuantizeRecord(spec)
        )
        self._runners[id(row)] = runner
        runner.event.connect(row.on_event)
        runner.done.connect(lambda ev, row=row: self._on_done(row, ev))

    def queue_from_fit(self, model_path: str | Path, types: list[str]) -> list[Path]:
        """From the fit page: show the choice here; queue at once unless consent is needed."""
        file_type = _source_file_type(Path(model_path))
        self.set_source(model_path, file_type)
        self.picker.set_checked(types)
        self.ctx.navigate.emit(self.key)
        if (
            file_type not in (None, "F32", "F16", "BF16")
            and not self.options.requantize.isChecked()
        ):
            self.ctx.status.emit(
                "The source is already quantized: tick the requantize box, then press Queue."
            )
            return []
        return self.queue(model_path, types)

    @staticmethod
    def _finals(spec: JobSpec) -> list[Path]:
        out = Path(spec.params["out"])
        if not spec.params.get("keep_split"):
            return [out]
        return final_paths(out, True, 1) + sorted(
            out.parent.glob(out.name.removesuffix(".gguf") + "-*-of-*.gguf")
        )

    def _ask_overwrite(self, paths: list[Path]) -> bool:
        if os.environ.get("QUANTLENS_NO_DIALOGS"):
            return False
        names = "\n".join(p.name for p in paths[:8]) + ("\n…" if len(paths) > 8 else "")
        answer = QMessageBox.question(
            self,
            "Replace existing files?",
            f"These outputs already exist in the output folder:\n\n{names}\n\nReplace them? "
            "(No keeps them and skips those jobs.)",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _add_row(self, spec: JobSpec) -> JobRow:
        row = JobRow(spec.params["target"], spec.params["out"])
        row.cancel_requested.connect(self.cancel_row)
        row.evaluate_requested.connect(self._evaluate)
        self._specs[id(row)] = spec
        self.job_list.add(row)
        return row

    # -- job lifecycle -----------------------------------------------------------------------
    def _on_done(self, row: JobRow, event: Event) -> None:
        # the runner's QuantizeRecord hooks already cleaned up and stored the run, off this thread
        row.on_done(event)
        self._runners.pop(id(row), None)
        if isinstance(event, Finished):
            self.job_finished.emit(dict(event.result))
            self.ctx.status.emit(f"Quantized {row.target}: {event.result.get('path')}")
        self.ctx.results_changed.emit()
        self.job_list.update_counts()
        self._maybe_all_done()

    def cancel_row(self, row: JobRow) -> None:
        runner = self._runners.get(id(row))
        if id(row) in self._unsubmitted or (
            runner is not None and runner in self.ctx.jobs.pending()
        ):
            self._unsubmitted.discard(id(row))
            if runner is not None:
                self.ctx.jobs.remove(runner)
                self._runners.pop(id(row), None)
            row.mark_cancelled_before_start()
            self.job_list.update_counts()
            self._maybe_all_done()
            return
        if runner is None:
            return
        runner.cancel()  # the child is gone when this returns; _on_done cleans up

    def cancel_all(self) -> None:
        self._turns.flush()
        for row in list(self.rows):
            if not row.done:
                self.cancel_row(row)

    def on_all_done(self, callback: Callable[[], Any]) -> None:
        """Call ``callback`` once, the next time every queued job has ended."""
        self._all_done_callbacks.append(callback)

    def _maybe_all_done(self) -> None:
        if self._turns.pending() or any(not r.done for r in self.rows) or not self.rows:
            return
        self.all_done.emit()
        callbacks, self._all_done_callbacks = self._all_done_callbacks, []
        for cb in callbacks:
            try:
                cb()
            except Exception:  # noqa: BLE001 - a caller's bug must not break the page
                log.exception("all_done callback failed")

    @property
    def rows(self) -> list[JobRow]:
        return self.job_list.rows

    def clear_finished(self) -> None:
        self.job_list.clear_finished()

    def _evaluate(self, path: str) -> None:
        self.ctx.extras["evaluate_model"] = path
        self.ctx.navigate.emit("evaluate")

    def open_recipe_editor(self) -> None:
        from qtapp.ui.quantize.recipe_editor import RecipeEditorDialog

        dialog = RecipeEditorDialog(self.ctx, self.source.text() or None, self)
        dialog.saved.connect(lambda _name: self._reload_recipes())
        dialog.show()

    def add_user_recipe(self, recipe: Any) -> None:
        """A recipe saved elsewhere (the Tailor dialog): offered here without a disk read."""
        self.user_recipes = {**self.user_recipes, recipe.name: recipe}
        self.picker.set_user_recipes(self.user_recipes)

    def open_tailor(self) -> Any:
        """The Tailor dialog for the source, with a weights budget (the Fit page's action
        tailors to whole GPUs instead)."""
        from qtapp.ui.common.tailor_panel import TailorDialog

        source = self.source.text()
        if not source or not Path(source).is_file():
            self.ctx.status.emit("Choose a source model first.")
            return None
        # the budget starts at about 5 bits per weight of the source, once it is read
        dialog = TailorDialog(source, settings=self.tailor_settings, parent=self)
        dialog.quantize.connect(lambda name: self._queue_tailored(dialog, name))
        dialog.edit.connect(self._edit_recipe)
        dialog.show_in_fit.connect(lambda name: self._show_in_fit(dialog, name))
        dialog.saved.connect(lambda _name: self._add_tailored(dialog))
        self.tailor_dialog = dialog
        dialog.show()
        return dialog

    def _add_tailored(self, dialog: Any) -> None:
        if dialog.result is not None:
            self.add_user_recipe(dialog.result.recipe)

    def _show_in_fit(self, dialog: Any, name: str) -> None:
        """The Fit page, on the tailored model, with the new recipe's row selected."""
        window = self.window()
        fit = getattr(window, "pages", {}).get("fit") if window is not None else None
        if fit is None:
            return
        model = getattr(fit, "model", None)
        if model is not None and model.path == Path(dialog.model_path):
            fit.reload_recipes(name)
        else:
            fit.select_recipe(name)  # not in its plan yet: selected once the model is read
            self.ctx.open_model(dialog.model_path)
        self.ctx.navigate.emit("fit")

    def _queue_tailored(self, dialog: Any, name: str) -> None:
        self._add_tailored(dialog)
        self.queue_from_fit(dialog.model_path, [name])

    def _edit_recipe(self, recipe: Any) -> None:
        from qtapp.ui.quantize.recipe_editor import RecipeEditorDialog

        dialog = RecipeEditorDialog(self.ctx, self.source.text() or None, self)
        dialog.editor.load_recipe(recipe)
        dialog.saved.connect(lambda _name: self._reload_recipes())
        dialog.show()

    def shutdown(self) -> None:
        """Window closing: stop our jobs; cleanup runs as their Cancelled events arrive."""
        self._turns.clear()
        self._adding.clear()  # their rows will not be made
        self._unsubmitted.clear()  # nor their jobs started
        self.imatrix_maker.shutdown()
        if self.tailor_dialog is not None:
            self.tailor_dialog.shutdown()
        for row in list(self.rows):
            runner = self._runners.get(id(row))
            if runner is not None and not row.done:
                runner.cancel()
                spec = self._specs.get(id(row))
                if spec is not None:
                    cleanup(spec, Cancelled())
