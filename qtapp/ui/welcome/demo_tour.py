"""The demo tour: a small non-modal panel that walks the pages with the demo model.

The steps (text, page, action) are Qt-free in :mod:`qtapp.core.app.demo`. Other pages are reached
only through optional hooks, looked up with ``getattr`` so the tour works whatever is built:

* quantize page: ``queue(model_path, types, out_dir, requantize=True)``
* evaluate page: ``queue(models, base, chunks, speed)``

A missing hook becomes a clear line in the panel, never an exception.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.app.demo import (
    DEMO_BASE_TYPE,
    DEMO_EVAL_CHUNKS,
    DEMO_SPEED_REPETITIONS,
    DEMO_TYPES,
    TOUR_STEPS,
    demo_outputs,
)
from qtapp.core.app.settings import Settings
from qtapp.ui.common.context import AppContext

log = logging.getLogger(__name__)

__all__ = ["DemoTour", "TourPanel"]

SIDE_PANEL_WIDTH = 154  # the main window's left column (170) less its margins


class TourPanel(QFrame):
    """The tour's card: under the navigation list of a main window (``add_side_panel``: it
    covers nothing and leaves the pages' size alone), or floating in the bottom-right corner of
    any other widget."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("tour")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.badge = QLabel("Demo tour")
        self.badge.setObjectName("muted")
        self.title = QLabel()
        self.title.setStyleSheet("font-size: 11pt; font-weight: 600;")
        self.title.setWordWrap(True)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #c77700;")
        self.note.hide()
        self.back_button = QPushButton("Back")
        self.next_button = QPushButton("Next")
        self.next_button.setDefault(True)
        self.close_button = QPushButton("End tour")
        self.close_button.setToolTip("End the tour (jobs and results stay)")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 8, 10, 10)
        lay.setSpacing(6)
        for label in (self.badge, self.title, self.text, self.note):
            lay.addWidget(label)
        buttons = QHBoxLayout()
        buttons.setSpacing(6)
        buttons.addWidget(self.back_button)
        buttons.addWidget(self.next_button)
        lay.addLayout(buttons)
        lay.addWidget(self.close_button)
        self._docked = callable(getattr(parent, "add_side_panel", None))
        if self._docked:
            self.setFixedWidth(SIDE_PANEL_WIDTH)
            parent.add_side_panel(self)  # type: ignore[attr-defined]
        else:
            self.setFixedWidth(320)
            parent.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self.parent() and event.type() == QEvent.Type.Resize:
            self.place()
        return False

    def place(self) -> None:
        """After a change of text: docked, as tall as the wrapped text needs (the column's
        layout would squeeze it); floating, keep to the bottom-right corner."""
        parent = self.parentWidget()
        if self._docked:
            layout = self.layout()
            layout.activate()
            self.setFixedHeight(layout.totalHeightForWidth(SIDE_PANEL_WIDTH))
            return
        if parent is None:
            return
        self.adjustSize()
        self.move(parent.width() - self.width() - 20, parent.height() - self.height() - 20)
        self.raise_()

    def remove(self) -> None:
        self.hide()
        self.deleteLater()


class DemoTour(QObject):
    """Drives the tour: navigation, the quantize and evaluate hooks, and the panel."""

    #: a step's action runs this long after its page switch: the page paints in between
    ACTION_DELAY_MS = 40

    step_changed = Signal(int)
    note_changed = Signal(str)
    finished = Signal()

    def __init__(self, ctx: AppContext, model: Path, window: QWidget | None) -> None:
        super().__init__(window)
        self.ctx = ctx
        self.model = Path(model)
        self.window = window
        self.index = -1
        self.out_dir = Path(Settings.load().output_dir) / "demo"
        self.expected = demo_outputs(self.model, self.out_dir)
        self.base: Path | None = None
        self.quants: dict[str, Path] = {}
        self.quantize_queued = False
        self.second_batch_queued = False
        self.evaluate_wanted = False
        self.evaluate_queued = False
        self.note = ""
        self.closed = False
        self._advancing = False
        self._actions: list[str] = []  # steps' actions waiting for their page's first paint
        self.quants_announced = False
        self.panel: TourPanel | None = None
        if window is not None:
            self.panel = TourPanel(window)
            self.panel.next_button.clicked.connect(self.next)
            self.panel.back_button.clicked.connect(self.back)
            self.panel.close_button.clicked.connect(self.close)
        self._poll = QTimer(self)
        self._poll.setInterval(1000)
        self._poll.timeout.connect(self._advance_pending)
        ctx.jobs.queue_changed.connect(self._advance_pending)

    # -- navigation ----------------------------------------------------------------------------
    def start(self) -> None:
        self.index = 0
        self._refresh_panel()  # the card shows with its text (go refreshes it a turn later)
        if self.panel is not None:
            self.panel.show()
        self.go(0)

    def go(self, index: int) -> None:
        index = max(0, min(index, len(TOUR_STEPS) - 1))
        self.index = index
        step = TOUR_STEPS[index]
        self._set_note("")
        self.ctx.navigate.emit(step.page)
        if step.action:
            self._actions.append(step.action)
            QTimer.singleShot(self.ACTION_DELAY_MS, self, self._act)
        # the card's new text in the next turn: its layout and paint (5-8 ms) with the page's
        # switch and paint (6-11 ms) were one turn, 60-69 ms on two busy cores (BENCHMARKS.md)
        QTimer.singleShot(0, self, self._refresh_panel)
        self.step_changed.emit(index)

    def actions_pending(self) -> bool:
        """A step's action (queueing jobs) is still to run."""
        return bool(self._actions)

    def _act(self) -> None:
        """A step's action, after its page has appeared: queueing the jobs in the turn of the
        page switch made that turn the tour's longest (40-50 ms of CPU with the page's show)."""
        if not self._actions:
            return
        action = self._actions.pop(0)
        if self.closed:
            self._actions.clear()
        elif action == "quantize":
            self._quantize()
        elif action == "evaluate":
            self._evaluate()

    def next(self) -> None:
        if self.index >= len(TOUR_STEPS) - 1:
            self.close()
            return
        self.go(self.index + 1)

    def back(self) -> None:
        self.go(self.index - 1)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._poll.stop()
        with contextlib.suppress(RuntimeError, TypeError):
            self.ctx.jobs.queue_changed.disconnect(self._advance_pending)
        if self.panel is not None:
            self.panel.remove()
            self.panel = None
        self.finished.emit()

    def _refresh_panel(self) -> None:
        if self.panel is None:
            return
        step = TOUR_STEPS[self.index]
        self.panel.badge.setText(f"Demo tour · {self.index + 1} of {len(TOUR_STEPS)}")
        self.panel.title.setText(step.title)
        self.panel.text.setText(step.text)
        self.panel.note.setText(self.note)
        self.panel.note.setVisible(bool(self.note))
        self.panel.back_button.setEnabled(self.index > 0)
        last = self.index == len(TOUR_STEPS) - 1
        self.panel.next_button.setText("Finish" if last else "Next")
        self.panel.close_button.setVisible(not last)
        self.panel.place()

    def _set_note(self, text: str) -> None:
        self.note = text
        if text:
            log.info("Demo tour: %s", text)
        self.note_changed.emit(text)
        if self.panel is not None:
            self.panel.note.setText(text)
            self.panel.note.setVisible(bool(text))
            self.panel.place()

    # -- hooks into other pages ----------------------------------------------------------------
    def _hook(self, page_key: str, name: str) -> Any:
        pages = getattr(self.window, "pages", None) or self.ctx.extras.get("pages") or {}
        hook = getattr(pages.get(page_key), name, None)
        return hook if callable(hook) else None

    def _quantize(self) -> None:
        if self.quantize_queued:
            self._advance_pending()
            return
        hook = self._hook("quantize", "queue")
        if hook is None:
            self._set_note(
                "The Quantize page in this build cannot take jobs from the tour yet. "
                "Choose types there yourself, or press Next to keep going."
            )
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._advancing = True  # the hook's queue_changed must not start the next batch early
        try:
            returned = hook(self.model, [DEMO_BASE_TYPE], self.out_dir, requantize=True)
        except Exception as exc:  # noqa: BLE001 - another page's bug must not end the tour
            log.exception("quantize hook failed")
            self._set_note(f"The Quantize page refused the demo jobs: {exc}")
            return
        finally:
            self._advancing = False
        self.quantize_queued = True
        self.base = _first_path(returned) or self.expected[DEMO_BASE_TYPE]
        self._set_note(
            f"Queued: {DEMO_BASE_TYPE} from the Q4_K_M; then {', '.join(DEMO_TYPES)} from that "
            f"{DEMO_BASE_TYPE}. Outputs go to {self.out_dir}."
        )
        self._poll.start()
        self._advance_pending()

    def _evaluate(self) -> None:
        if self.evaluate_queued:
            return
        if self._hook("evaluate", "queue") is None:
            self._set_note(
                "The Evaluate page in this build cannot take jobs from the tour yet. "
                "Pick the quants there yourself, or press Next."
            )
            return
        if not self.quantize_queued:
            self._set_note("Nothing to evaluate yet: go Back to the Quantize step first.")
            return
        self.evaluate_wanted = True
        self._advance_pending()

    def _advance_pending(self) -> None:
        """Queue the next batch once its input exists (jobs finish in the background).

        Re-entrant calls are ignored: a hook that submits jobs makes the job queue emit
        ``queue_changed``, which lands here again before the hook has returned.
        """
        if self._advancing or self.closed:
            return
        self._advancing = True
        try:
            self._advance_pending_once()
        finally:
            self._advancing = False

    def _advance_pending_once(self) -> None:
        hook_q = self._hook("quantize", "queue")
        if (
            self.quantize_queued
            and not self.second_batch_queued
            and self.base is not None
            and _ready(self.base)
            and hook_q is not None
        ):
            self.second_batch_queued = True  # before the call: never queue twice
            try:
                returned = hook_q(self.base, list(DEMO_TYPES), self.out_dir, requantize=True)
            except Exception as exc:  # noqa: BLE001
                log.exception("quantize hook failed")
                self._set_note(f"The Quantize page refused the demo jobs: {exc}")
                return
            paths = _all_paths(returned)
            for qtype, path in zip(DEMO_TYPES, paths, strict=False):
                self.quants[qtype] = path
        for qtype in DEMO_TYPES:
            self.quants.setdefault(qtype, self.expected[qtype])
        if self.evaluate_wanted and not self.evaluate_queued:
            ready = [q for q in DEMO_TYPES if self.second_batch_queued and _ready(self.quants[q])]
            if len(ready) < len(DEMO_TYPES):
                self._set_note(
                    f"Waiting for the quants: {len(ready)} of {len(DEMO_TYPES)} ready. "
                    "Evaluation starts by itself when they are."
                )
                self._poll.start()
                return
            hook_e = self._hook("evaluate", "queue")
            if hook_e is None:
                return
            models = [self.quants[q] for q in DEMO_TYPES]
            self.evaluate_queued = True  # before the call: never queue twice
            try:
                hook_e(models, self.base, DEMO_EVAL_CHUNKS, True, DEMO_SPEED_REPETITIONS)
            except Exception as exc:  # noqa: BLE001
                log.exception("evaluate hook failed")
                self._set_note(f"The Evaluate page refused the demo jobs: {exc}")
                return
            self._set_note(
                f"Evaluating {', '.join(DEMO_TYPES)} against the {DEMO_BASE_TYPE} base "
                f"({DEMO_EVAL_CHUNKS} chunks each, plus speed). Press Next when they finish."
            )
        all_ready = self.second_batch_queued and all(_ready(self.quants[q]) for q in DEMO_TYPES)
        if all_ready and not self.evaluate_wanted and not self.quants_announced:
            self.quants_announced = True
            if TOUR_STEPS[self.index].action == "quantize":
                self._set_note(
                    f"Done: {DEMO_BASE_TYPE}, {', '.join(DEMO_TYPES)} are in {self.out_dir}. "
                    "Press Next to measure what each one costs."
                )
        if all_ready or self.evaluate_queued:
            self._poll.stop()


def _ready(path: Path) -> bool:
    """An output exists and is not being written (writers use ``name.part`` until done)."""
    return path.is_file() and not path.with_name(path.name + ".part").exists()


def _all_paths(value: Any) -> list[Path]:
    if isinstance(value, (str, Path)):
        return [Path(value)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, Sequence):
        return [Path(v) for v in value if isinstance(v, (str, Path))]
    return []


def _first_path(value: Any) -> Path | None:
    paths = _all_paths(value)
    return paths[0] if paths else None
