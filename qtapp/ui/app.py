"""Start the window: QApplication, exception hook, smoke test."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from types import TracebackType

log = logging.getLogger(__name__)


def install_excepthook() -> None:
    """Log any uncaught exception and show it in a dialog instead of dying silently."""
    from PySide6.QtWidgets import QApplication, QMessageBox

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("Uncaught exception:\n%s", text)
        if QApplication.instance() is None or os.environ.get("QUANTLENS_NO_DIALOGS"):
            sys.__excepthook__(exc_type, exc, tb)
            return
        box = QMessageBox(
            QMessageBox.Icon.Critical, "QuantLens: unexpected error", f"{exc_type.__name__}: {exc}"
        )
        box.setInformativeText("QuantLens keeps running. The details are in the log file.")
        box.setDetailedText(text)
        box.exec()

    sys.excepthook = hook


#: how long a Python thread may hold the GIL while another waits for it (Python's default: 5 ms)
GIL_SWITCH_INTERVAL = 0.001


def give_the_window_priority(on: bool = True) -> None:
    """This process is the window's: its jobs yield the CPU to it, and its threads the GIL.

    Every job it starts, core code's too (dry runs, quantizations), runs niced. And the GUI
    thread calls into Qt hundreds of times a turn, each call releasing the GIL: while a
    background thread runs Python, each call back waited for the GIL up to the switch interval.
    With two busy cores that waiting was 20-60 ms of a 100 ms stall; 1 ms cut it by half or more
    (bench/gui_stalls.py, BENCHMARKS.md)."""
    from qtapp.core.jobs.job import start_jobs_for_a_window

    start_jobs_for_a_window(on)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL if on else 0.005)


def keep_painting_on_the_gui_thread() -> None:
    """Qt's raster engine hands every fill of 96 or more spans (a page's background, a chart's
    area) and every large image scale to a pool of threads, and the GUI thread waits for them.
    On busy cores that wait is a ping-pong of wake-ups in which the GUI thread is blocked while
    the pool's threads queue for a CPU: up to 2,300 switches a second, one stretch of 220 ms in
    the demo tour (perf sched; BENCHMARKS.md, 2026-12-07 12:00). Qt reads the switch at the
    pool's first use, so this runs before the first paint; a value already set is kept."""
    os.environ.setdefault("QT_NO_GUI_THREADPOOL", "1")


def create_app() -> object:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from qtapp.core.app.paths import resources_dir

    keep_painting_on_the_gui_thread()
    app = QApplication.instance() or QApplication(sys.argv)
    from qtapp.ui.common import gc_guard

    gc_guard.install(app)
    give_the_window_priority()
    from qtapp.ui.common import threads

    threads.warm_up()  # the threads of background calls and jobs, started before the window shows
    app.setApplicationName("QuantLens")
    app.setOrganizationName("QuantLens")
    app.setDesktopFileName("quantlens")
    icon = resources_dir() / "icons" / "quantlens.svg"
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))
    from qtapp.core.app.settings import Settings
    from qtapp.ui.common.theme import apply_theme

    apply_theme(Settings.load().theme, app)  # type: ignore[arg-type]
    return app


class FileOpenFilter:
    """macOS hands files opened from Finder (double-click, drop on the Dock icon) to the app as
    ``QFileOpenEvent``s, not as arguments: route them to the window."""

    def __init__(self, window: object) -> None:
        from PySide6.QtCore import QEvent, QObject

        class _Filter(QObject):
            def eventFilter(self, _obj: object, event: object) -> bool:  # noqa: N802 - Qt
                if getattr(event, "type", lambda: None)() == QEvent.Type.FileOpen:
                    path = event.file()  # type: ignore[attr-defined]
                    if path:
                        window.open_model(path)  # type: ignore[attr-defined]
                        return True
                return False

        self.filter = _Filter()


def watch_file_open(app: object, window: object, platform: str = sys.platform) -> object | None:
    """Route Finder's file-open events to the window, on macOS only: an event filter on the
    application sees every event of every widget, so elsewhere it would only be a Python call
    in each of them (hundreds per paint) for an event that never comes."""
    if platform != "darwin":
        return None
    file_open = FileOpenFilter(window)
    app.installEventFilter(file_open.filter)  # type: ignore[attr-defined]
    return file_open


def run_gui(smoke_test: bool = False, demo: bool = False, model: str | None = None) -> int:
    from PySide6.QtCore import QTimer

    from qtapp.ui.main_window import MainWindow

    app = create_app()
    install_excepthook()
    window = MainWindow()
    file_open = watch_file_open(app, window)  # noqa: F841 - kept alive while the app runs
    window.show()
    if model:
        window.open_model(model)
    elif demo:
        window.start_demo()
    if smoke_test:

        def check() -> None:
            shown = window.isVisible()
            print("smoke test: window shown" if shown else "smoke test: window NOT shown")
            window.close()
            app.exit(0 if shown else 1)  # type: ignore[attr-defined]

        QTimer.singleShot(0, check)
    return int(app.exec())  # type: ignore[attr-defined]
