"""The window as a whole: it opens, every page is there, it closes with nothing left running."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from qtapp.ui.main_window import PAGES, MainWindow


def test_window_opens_with_every_page_and_navigates(qtbot) -> None:
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.nav.count() == len(PAGES)
    for key, _ in PAGES:
        window.show_page(key)
        assert window.current_page_key() == key
        assert window.stack.currentWidget() is window.pages[key]
    window.close()
    assert not window.ctx.jobs.current


def test_smoke_test_flag_exits_zero(quantlens_home) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QUANTLENS_HOME=str(quantlens_home))
    proc = subprocess.run(
        [sys.executable, "-m", "qtapp", "--smoke-test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "window shown" in proc.stdout
    assert (quantlens_home / "logs" / "quantlens.log").exists()


def test_first_run_greets_then_later_starts_open_on_hardware(qtbot) -> None:
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    assert first.current_page_key() == "welcome"
    first.close()
    second = MainWindow()
    qtbot.addWidget(second)
    second.show()
    assert second.current_page_key() == "hardware"
    second.close()


def test_a_file_opened_from_the_desktop_opens_in_the_window(qtbot, tiny_model) -> None:
    from PySide6.QtGui import QFileOpenEvent
    from PySide6.QtWidgets import QApplication

    from qtapp.ui.app import watch_file_open

    window = MainWindow()
    qtbot.addWidget(window)
    # elsewhere no filter at all: one on the application would run for every event of every widget
    assert watch_file_open(QApplication.instance(), window, platform="linux") is None
    opener = watch_file_open(QApplication.instance(), window, platform="darwin")
    assert opener is not None
    try:
        with qtbot.waitSignal(window.ctx.model_changed) as opened:
            QApplication.sendEvent(QApplication.instance(), QFileOpenEvent(str(tiny_model)))
        assert opened.args[0] == tiny_model
        assert window.current_page_key() == "fit"
    finally:
        QApplication.instance().removeEventFilter(opener.filter)
        window.close()


def test_tables_explain_quant_types_and_metrics_in_plain_words(qtbot) -> None:
    from PySide6.QtCore import Qt

    from qtapp.core.app.glossary import explain, explain_quant

    window = MainWindow()
    qtbot.addWidget(window)
    evaluate = window.pages["evaluate"]
    assert evaluate.table.horizontalHeaderItem(2).toolTip() == explain("ppl")
    compare = window.pages["compare"]
    model = compare.table.model()
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())]
    tip = model.headerData(
        headers.index("Mean KLD"), Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole
    )
    assert tip.startswith(explain("kld"))
    picker = window.pages["quantize"].picker
    assert explain_quant("Q4_K_M") in picker._items["Q4_K_M"].toolTip(0)
    window.close()


def _drop(window: MainWindow, path: object) -> bool:
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    window.dropEvent(event)
    return event.isAccepted()


def test_a_dropped_task_file_becomes_the_evaluate_pages_task_file(qtbot, tmp_path) -> None:
    from tests.core.test_tasks import _write_tasks

    window = MainWindow()
    qtbot.addWidget(window)
    tasks = _write_tasks(tmp_path / "hs.txt", 3)
    assert _drop(window, tasks)
    controls = window.pages["evaluate"].controls
    assert controls.task_file.text() == str(tasks) and controls.task_kind == "hellaswag"
    assert window.current_page_key() == "evaluate"
    notes = tmp_path / "notes.txt"
    notes.write_text("not a task file\n")
    assert not _drop(window, notes)  # refused with a status line, the task file unchanged
    assert controls.task_file.text() == str(tasks)
    window.close()


def test_a_status_message_does_not_resize_the_pages(qtbot, shown) -> None:
    """The status bar is there from the start: one appearing with the first message shrank
    every page, and each chart of the shown one was laid out and drawn again."""
    window = shown(MainWindow(), 900, 700)
    before = window.stack.size()
    window.ctx.status.emit("Queued 3 quantizations")
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() != "", timeout=5000)
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()  # the layout requests the message posted
    assert window.statusBar().isVisible() and window.stack.size() == before
    window.close()


def test_the_window_process_gives_its_gui_thread_priority() -> None:
    """Jobs started anywhere in the window's process are niced; threads hand the GIL over fast."""
    from qtapp.core.jobs.job import Job, JobSpec
    from qtapp.ui.app import GIL_SWITCH_INTERVAL, give_the_window_priority

    assert not Job(JobSpec("echo", {})).yield_to_window  # as the CLI starts them
    give_the_window_priority()
    try:
        assert Job(JobSpec("echo", {})).yield_to_window
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL)
    finally:
        give_the_window_priority(False)
    assert not Job(JobSpec("echo", {})).yield_to_window
    assert sys.getswitchinterval() == pytest.approx(0.005)


PAINT_A_LARGE_AREA = """
import os
from qtapp.ui.app import create_app
app = create_app()
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QImage, QPainter
image = QImage(1200, 900, QImage.Format.Format_ARGB32_Premultiplied)
image.fill(0)
painter = QPainter(image)  # a chart's translucent, antialiased area: Qt blends it span by span
painter.setRenderHint(QPainter.RenderHint.Antialiasing)
painter.setBrush(QColor(0, 0, 255, 128))
painter.drawEllipse(QRectF(10, 10, 1100, 800))
painter.end()
threads = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print("pool threads:", sum("pooled" in name for name in threads))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread names in /proc")
def test_the_window_paints_on_its_own_thread(quantlens_home) -> None:
    """Qt's raster engine would hand a large fill to its pool of threads and wait for them: on
    busy cores that wait blocked the GUI thread for 50-100 ms. The app keeps fills on its
    thread, so painting a large translucent area starts no pool thread."""
    env = {k: v for k, v in os.environ.items() if k != "QT_NO_GUI_THREADPOOL"}
    env.update(QT_QPA_PLATFORM="offscreen", QUANTLENS_HOME=str(quantlens_home))
    proc = subprocess.run(
        [sys.executable, "-c", PAINT_A_LARGE_AREA],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pool threads: 0" in proc.stdout, proc.stdout
