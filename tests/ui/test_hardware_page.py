"""The hardware view: replayed GPUs shown, the chart moves, faults become banners, clean close."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from qtapp.core.hardware import nvml_replay
from qtapp.core.hardware.llama_build import CUDA_INSTALL_COMMAND, LlamaBuild, store_build
from qtapp.core.hardware.probe import HardwareProbe, HardwareReport
from qtapp.ui.common.context import AppContext
from qtapp.ui.main_window import MainWindow

SNAPSHOT = Path(__file__).resolve().parents[1] / "fixtures" / "nvml" / "h200-idle.json"
CPU_BUILD = LlamaBuild(version="0.3.36", supports_gpu_offload=False, system_info="CPU : AVX = 1")


def open_window(qtbot, probe: HardwareProbe | None = None, poll_ms: int = 60) -> MainWindow:
    ctx = AppContext()
    ctx.extras["hardware_poll_ms"] = poll_ms
    if probe is not None:
        ctx.extras["hardware_probe"] = probe
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    window.show_page("hardware")
    return window


def close(window: MainWindow) -> None:
    window.close()
    leftover = [t.name for t in threading.enumerate() if t.name.startswith(("ql-hw", "ql-llama"))]
    assert not leftover, leftover


def test_window_shows_replayed_gpus_updates_the_chart_and_closes_cleanly(
    qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(nvml_replay.REPLAY_ENV, str(SNAPSHOT))
    monkeypatch.setenv(nvml_replay.REPLAY_GPUS_ENV, "2")
    window = open_window(qtbot)
    page = window.pages["hardware"]
    assert window.current_page_key() == "hardware"
    qtbot.waitUntil(lambda: window.ctx.hardware is not None, timeout=10_000)
    report = window.ctx.hardware  # published to the other pages through AppContext
    assert isinstance(report, HardwareReport) and report.status == "ok"
    qtbot.waitUntil(lambda: len(page.cards) == 2, timeout=10_000)
    first = next(iter(page.cards.values()))
    assert first.title.text() == "GPU 0 · NVIDIA H200"
    assert first.text("total") == "140.4 GiB"
    assert first.text("free") == "139.8 GiB"
    assert first.text("used") == "0.6 GiB"
    assert first.text("bandwidth") == "4.81 TB/s"
    assert first.text("cc") == "9.0"
    assert first.text("temp") == "32 °C"
    assert first.text("power") == "116 W of 700 W"
    assert first.text("util") == "GPU 0 % · memory 0 %"
    assert "00000000:00:07.0" in list(page.cards.values())[1].subtitle.text()
    assert page.replay_banner.isVisible()
    assert "Replayed snapshot" in page.replay_banner.title.text()
    assert "replayed snapshot" in page.summary.text()
    qtbot.waitUntil(lambda: page.chart.point_count() >= 2, timeout=10_000)
    assert set(page.chart.mem_curves) == {g.uuid for g in report.gpus}
    # the llama.cpp build comes from a real worker child
    qtbot.waitUntil(lambda: page.llama is not None, timeout=30_000)
    assert page.llama.version == "0.3.36"
    assert page.llama_card.text("version") == "0.3.36"
    if page.llama.supports_gpu_offload is False:
        qtbot.waitUntil(page.build_banner.isVisible, timeout=5_000)
        assert page.build_banner.command.text() == CUDA_INSTALL_COMMAND
    close(window)
    assert page.timer.isActive() is False


def test_a_gpu_lost_while_running_shows_the_banner_and_a_lost_card(qtbot) -> None:
    store_build(CPU_BUILD)  # cached: no worker child for this test
    probe = HardwareProbe(lambda: nvml_replay.replay(SNAPSHOT, 2, "lost-after:2"))
    window = open_window(qtbot, probe)
    page = window.pages["hardware"]
    qtbot.waitUntil(lambda: page.report is not None and page.report.status == "gpu-lost",
                    timeout=10_000)  # fmt: skip
    assert page.status_banner.isVisible()
    assert page.status_banner.title.text() == "GPU lost"
    assert "GPU 1" in page.status_banner.text.text()
    lost = [card for card in page.cards.values() if card.lost]
    assert len(lost) == 1 and "LOST" in lost[0].title.text()
    assert window.ctx.hardware.status == "gpu-lost"
    assert len(window.ctx.hardware.gpus) == 1
    close(window)


def test_cpu_only_shows_the_reason_and_host_ram(qtbot) -> None:
    store_build(CPU_BUILD)
    probe = HardwareProbe(lambda: nvml_replay.replay(SNAPSHOT, faults="no-driver"))
    window = open_window(qtbot, probe)
    page = window.pages["hardware"]
    qtbot.waitUntil(lambda: page.report is not None, timeout=10_000)
    assert page.report.status == "cpu-only"
    assert page.status_banner.title.text() == "CPU only"
    assert "No NVIDIA driver" in page.status_banner.text.text()
    assert page.cards == {}
    assert not page.build_banner.isVisible()  # no GPU: a CPU build is the right one
    assert page.host_card.text("ram_total").endswith("GiB")
    qtbot.waitUntil(lambda: page.chart.point_count("host") >= 2, timeout=10_000)
    close(window)


def test_one_failing_query_shows_unknown_with_the_reason(qtbot) -> None:
    store_build(CPU_BUILD)
    probe = HardwareProbe(
        lambda: nvml_replay.replay(SNAPSHOT, faults="error:nvmlDeviceGetPowerUsage")
    )
    window = open_window(qtbot, probe)
    page = window.pages["hardware"]
    qtbot.waitUntil(lambda: len(page.cards) == 1, timeout=10_000)
    card = next(iter(page.cards.values()))
    assert card.text("power") == "unknown (limit 700 W)"
    assert card.text("temp") == "32 °C"
    assert page.build_banner.isVisible()  # a GPU, and the cached build cannot offload
    close(window)


def test_polling_does_not_pile_up_objects_and_refresh_restarts_nvml(qtbot) -> None:
    from qtapp.ui.common.background import BackgroundCall

    store_build(CPU_BUILD)
    nvml = nvml_replay.replay(SNAPSHOT)
    window = open_window(qtbot, HardwareProbe(lambda: nvml), poll_ms=20)
    page = window.pages["hardware"]
    qtbot.waitUntil(lambda: nvml.calls.count("nvmlDeviceGetCount") >= 12, timeout=10_000)
    assert nvml.calls.count("nvmlInit") == 1  # polls reuse the open NVML
    qtbot.waitUntil(lambda: len(page.findChildren(BackgroundCall)) <= 2, timeout=5_000)
    page.refresh_button.click()
    qtbot.waitUntil(lambda: nvml.calls.count("nvmlInit") == 2, timeout=5_000)
    close(window)
    assert not nvml.initialised  # NVML released on close


def test_the_chart_is_laid_out_for_no_gpu_while_its_page_is_hidden(qtbot) -> None:
    """The layout follows the first reading, not the chart's first redraw: shown later, the
    page is painted once at its final size (the memory plot doubled its width in the turn after
    the page appeared, and was drawn twice)."""
    probe = HardwareProbe(lambda: nvml_replay.replay(SNAPSHOT, faults="no-driver"))
    ctx = AppContext()
    ctx.extras["hardware_probe"] = probe
    window = MainWindow(ctx)
    qtbot.addWidget(window)
    window.show()
    window.show_page("fit")  # the hardware page stays hidden
    page = window.pages["hardware"]
    qtbot.waitUntil(lambda: page.report is not None, timeout=10_000)
    assert not page.isVisible()
    chart = page.chart
    assert not chart.util_plot.isVisibleTo(chart)
    assert chart.mem_plot.getPlotItem().titleLabel.text == "Host RAM in use"
    # laid out while hidden (a hidden widget's layout otherwise waits for its show: the
    # new width, resize and axes came in the page switch's turn)
    assert chart.mem_plot.width() > chart.width() * 0.9
    window.show_page("hardware")
    width = chart.mem_plot.width()
    assert width > chart.width() * 0.9  # the whole row at once
    qtbot.waitUntil(lambda: chart.point_count("host") >= 1, timeout=10_000)
    assert chart.mem_plot.width() == width
    close(window)
