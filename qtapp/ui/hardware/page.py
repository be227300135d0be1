"""The Hardware page, the app's first view: GPUs, host, llama.cpp build, live usage.

NVML is read off the GUI thread (``nvmlInit`` can take seconds on a machine without persistence
mode, and a GPU falling off the bus can make a query hang); one reading at a time, about once a
second. The llama.cpp build is asked in a worker child (job ``llama_info``), once per install.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication, QShowEvent
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from qtapp.core.hardware.llama_build import (
    CUDA_INSTALL_COMMAND,
    cached_build,
    store_build,
)
from qtapp.core.hardware.probe import HardwareProbe, HardwareReport, LlamaBuild
from qtapp.core.jobs.events import Failed, Finished
from qtapp.core.jobs.job import JobSpec
from qtapp.ui.common.background import BackgroundCall
from qtapp.ui.common.banner import Banner
from qtapp.ui.common.context import AppContext
from qtapp.ui.common.threads import pool
from qtapp.ui.common.workers import JobRunner
from qtapp.ui.hardware.hw_cards import GpuCard, HostCard, LlamaCard
from qtapp.ui.hardware.usage_chart import UsageChart

log = logging.getLogger(__name__)

POLL_MS = 1000
LLAMA_PROBE_DELAY_MS = 3000
_MEMORY_STEP = 256 * 1024**2  # free memory moves the plan only in steps this big


class Page(QWidget):
    key = "hardware"
    title = "Hardware"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        probe = ctx.extras.get("hardware_probe")
        self.probe: HardwareProbe = probe or HardwareProbe(own_pids=lambda: self._own_pids)
        self._own_pids: frozenset[int] = frozenset({os.getpid()})
        self.report: HardwareReport | None = None
        self.llama: LlamaBuild | None = cached_build()
        self._call: BackgroundCall | None = None
        self._busy = False  # a reading is in flight (one at a time)
        self._refresh_wanted = False  # Refresh was asked while a reading was in flight
        self._llama_runner: JobRunner | None = None
        self._closed = False
        self._published: tuple[Any, ...] | None = None
        self.cards: dict[str, GpuCard] = {}
        self._build_ui()
        self.timer = QTimer(self)
        self.timer.setInterval(int(ctx.extras.get("hardware_poll_ms", POLL_MS)))
        self.timer.timeout.connect(self.poll)
        QTimer.singleShot(0, self._start)

    # -- layout --------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        title = QLabel("Hardware")
        title.setObjectName("pageTitle")
        self.summary = QLabel("Reading the GPUs…")
        self.summary.setObjectName("muted")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read NVML again from scratch")
        self.refresh_button.clicked.connect(self.refresh)
        self.copy_button = QPushButton("Copy as JSON")
        self.copy_button.setToolTip("The same report as `quantlens hw --json`")
        self.copy_button.clicked.connect(self.copy_json)
        head = QHBoxLayout()
        titles = QVBoxLayout()
        titles.setSpacing(2)
        titles.addWidget(title)
        titles.addWidget(self.summary)
        head.addLayout(titles, 1)
        head.addWidget(self.copy_button)
        head.addWidget(self.refresh_button)

        self.replay_banner = Banner()
        self.status_banner = Banner()
        self.build_banner = Banner()
        self.gpu_grid = QGridLayout()
        self.gpu_grid.setSpacing(12)
        self.host_card = HostCard()
        self.llama_card = LlamaCard()
        self.llama_card.set_build(self.llama)
        lower = QHBoxLayout()
        lower.setSpacing(12)
        lower.addWidget(self.host_card, 1)
        lower.addWidget(self.llama_card, 1)

        self.chart = UsageChart()
        chart_card = QFrame()
        chart_card.setObjectName("card")
        chart_layout = QVBoxLayout(chart_card)
        chart_layout.setContentsMargins(14, 10, 14, 12)
        chart_title = QLabel("Live usage")
        chart_title.setStyleSheet("font-size: 12.5pt; font-weight: 600; border: none;")
        self.chart_note = QLabel("sampled every second, last 10 minutes")
        self.chart_note.setObjectName("muted")
        self.chart_note.setStyleSheet("border: none;")
        row = QHBoxLayout()
        row.addWidget(chart_title)
        row.addStretch(1)
        row.addWidget(self.chart_note)
        chart_layout.addLayout(row)
        chart_layout.addWidget(self.chart)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.setContentsMargins(22, 18, 22, 18)
        layout.setSpacing(12)
        layout.addLayout(head)
        layout.addWidget(self.replay_banner)
        layout.addWidget(self.status_banner)
        layout.addWidget(self.build_banner)
        layout.addLayout(self.gpu_grid)
        layout.addLayout(lower)
        layout.addWidget(chart_card)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    # -- reading -------------------------------------------------------------------------------
    def _start(self) -> None:
        if self._closed:
            return
        self.refresh()
        self.timer.start()
        # the build check starts a worker child: at once when this page is shown, else a little
        # later, so a window opened for another page (or a short test) does not pay for it
        QTimer.singleShot(LLAMA_PROBE_DELAY_MS, self._probe_llama)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        QTimer.singleShot(0, self._probe_llama)

    def refresh(self) -> None:
        """A full reading (restarts NVML), off the GUI thread; queued behind one in flight."""
        if self._busy:
            self._refresh_wanted = True
            return
        self._read(self.probe.report, "hw-report")

    def poll(self) -> None:
        """A cheap reading of the figures that move; skipped while one is still running."""
        current = self.ctx.jobs.current
        pids = {os.getpid()}
        if current is not None and current.job.pid is not None:
            pids.add(current.job.pid)
        self._own_pids = frozenset(pids)
        self._read(self.probe.poll, "hw-poll")

    def _read(self, fn: Any, name: str) -> None:
        if self._closed or self._busy:
            return
        if self._call is not None:  # finished: one object a second would pile up otherwise
            self._call.delete_when_done()
        self._busy = True
        call = BackgroundCall(lambda *_: fn(), name, self)
        call.finished.connect(self._on_report)
        call.failed.connect(self._on_failed)
        self._call = call
        call.start()

    def _probe_llama(self) -> None:
        """Ask a worker child which llama.cpp build is installed (not queued behind long jobs)."""
        if self._closed or self.llama is not None or self._llama_runner is not None:
            return
        runner = JobRunner(JobSpec("llama_info"), self)
        runner.done.connect(self._on_llama_done)
        self._llama_runner = runner
        try:
            runner.start()
        except OSError as exc:  # the worker could not even start
            self._llama_runner = None
            self._on_llama_done(Failed(message=f"Could not start a worker process: {exc}"))

    def _on_llama_done(self, event: object) -> None:
        if isinstance(event, Finished):
            self.llama = LlamaBuild.from_dict(event.result)
            build = self.llama  # cached on disk off the GUI thread (it stats the library files)
            pool().submit(lambda: store_build(build), "ql-store-llama-build")
        elif isinstance(event, Failed):
            self.llama = LlamaBuild(version=None, supports_gpu_offload=None, error=event.message)
        else:
            return
        self.llama_card.set_build(self.llama)
        if self.report is not None:
            self._show(replace(self.report, llama=self.llama))

    def _reading_done(self) -> None:
        self._busy = False
        if self._refresh_wanted and not self._closed:
            self._refresh_wanted = False
            self.refresh()

    def _on_failed(self, message: str) -> None:  # the probe never raises; this is a last guard
        log.error("Hardware reading failed: %s", message)
        if not self._closed:
            self.status_banner.set_message("error", "Could not read the hardware", message)
        self._reading_done()

    def _on_report(self, report: object) -> None:
        if not self._closed and isinstance(report, HardwareReport):
            self._show(replace(report, llama=self.llama))
        self._reading_done()

    # -- showing -------------------------------------------------------------------------------
    def _show(self, report: HardwareReport) -> None:
        self.report = report
        self._show_summary(report)
        self._show_banners(report)
        self._show_gpus(report)
        self.host_card.set_host(report.host)
        self.llama_card.set_build(report.llama)
        self.chart.add_report(report)
        self.chart_note.setText(
            "host RAM in use (no GPU), sampled every second"
            if not report.gpus
            else "sampled every second, last 10 minutes"
        )
        self._publish(report)

    def _show_summary(self, report: HardwareReport) -> None:
        parts = []
        if report.gpus:
            total = sum(g.total_bytes or 0 for g in report.gpus) / 1024**3
            parts.append(
                f"{len(report.gpus)} NVIDIA GPU{'s' if len(report.gpus) > 1 else ''}, "
                f"{total:.1f} GiB VRAM"
            )
        else:
            parts.append("No usable NVIDIA GPU")
        if report.driver_version:
            parts.append(f"driver {report.driver_version}")
        if report.cuda_driver_version:
            parts.append(f"CUDA {report.cuda_driver_version}")
        if report.is_replay:
            parts.append("replayed snapshot")
        self.summary.setText("  ·  ".join(parts))

    def _show_banners(self, report: HardwareReport) -> None:
        if report.is_replay:
            self.replay_banner.set_message(
                "info",
                "Replayed snapshot, not live figures from this machine",
                f"The GPU figures come from {report.source_detail}, because "
                "QUANTLENS_NVML_REPLAY is set. Unset it to see this machine's GPUs.",
            )
        else:
            self.replay_banner.clear()
        if report.status == "cpu-only":
            self.status_banner.set_message(
                "warning",
                "CPU only",
                f"{report.reason} Models will run on the CPU and use host RAM.",
            )
        elif report.status == "gpu-lost":
            self.status_banner.set_message("error", "GPU lost", report.reason)
        elif report.status == "error":
            self.status_banner.set_message(
                "error",
                "Could not read the GPUs",
                f"{report.reason} QuantLens keeps working and plans for the CPU.",
            )
        else:
            self.status_banner.clear()
        build = report.llama
        if report.needs_cuda_build and build is not None:
            self.build_banner.set_message(
                "warning",
                "This llama.cpp build cannot use your GPUs",
                f"llama-cpp-python {build.version or ''} was built for the CPU only, so every "
                "model would run on the CPU. Install a CUDA build (it compiles llama.cpp, which "
                "takes several minutes and needs the CUDA toolkit), then restart QuantLens:",
                CUDA_INSTALL_COMMAND,
            )
        elif build is not None and build.error:
            self.build_banner.set_message(
                "warning", "The llama.cpp build could not be checked", build.error
            )
        else:
            self.build_banner.clear()

    def _show_gpus(self, report: HardwareReport) -> None:
        shown = [(g, False) for g in report.gpus] + [(g, True) for g in report.lost_gpus]
        shown.sort(key=lambda pair: pair[0].index)
        keys = [f"{g.uuid or g.index}" for g, _ in shown]
        if keys != list(self.cards):
            for card in self.cards.values():
                self.gpu_grid.removeWidget(card)
                card.deleteLater()
            self.cards = {}
            columns = 3 if len(keys) == 1 else 2  # one card spans the page: use the width
            for n, key in enumerate(keys):
                card = GpuCard(columns)
                self.cards[key] = card
                self.gpu_grid.addWidget(card, n // 2, n % 2)
        for key, (gpu, lost) in zip(keys, shown, strict=True):
            self.cards[key].set_gpu(gpu, lost)

    def _publish(self, report: HardwareReport) -> None:
        """Tell the other pages, but only when something that changes a plan changed."""
        signature = (
            report.status,
            tuple(g.uuid for g in report.gpus),
            tuple(
                None if g.free_bytes is None else g.free_bytes // _MEMORY_STEP for g in report.gpus
            ),
            report.llama,
        )
        if signature != self._published:
            self._published = signature
            self.ctx.set_hardware(report)

    def copy_json(self) -> None:
        if self.report is not None:
            QGuiApplication.clipboard().setText(self.report.to_json())
            self.ctx.status.emit("Hardware report copied as JSON")

    # -- closing -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop polling, end the llama.cpp probe and the reading in flight, release NVML."""
        self._closed = True
        self.timer.stop()
        self.chart.stop()
        if self._llama_runner is not None:
            if self._llama_runner.terminal is None:
                self._llama_runner.cancel()
            self._llama_runner.wait()
        if self._call is not None:
            self._call.wait()
        self.probe.close()
