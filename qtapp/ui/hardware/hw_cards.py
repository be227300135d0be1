"""Cards for the hardware view: one per GPU, the host, the llama.cpp build.

Each card is a titled grid of label / value pairs. A value NVML would not give reads "unknown"
in a muted colour, with NVML's reason as its tooltip.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from qtapp.core.hardware import format as fmt
from qtapp.core.hardware.probe import GpuInfo, HostInfo, LlamaBuild
from qtapp.ui.common.progress import ProgressBar

BAR_STYLE = (
    "QProgressBar { border: 1px solid palette(mid); border-radius: 4px; text-align: center;"
    " background: palette(alternate-base); }"
    " QProgressBar::chunk { background: #2f7de1; border-radius: 3px; }"
)


def usage_bar() -> ProgressBar:
    """A thin bar with its figures written on it (per mille, for a smooth fill)."""
    bar = ProgressBar()
    bar.setRange(0, 1000)
    bar.setTextVisible(True)
    bar.setFixedHeight(20)
    bar.setStyleSheet(BAR_STYLE)
    return bar


class InfoCard(QFrame):
    """A titled card with rows of ``label: value`` in ``columns`` pairs per line."""

    def __init__(self, title: str, columns: int = 1, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        self._columns = columns
        self.title = QLabel(title)
        self.title.setObjectName("cardTitle")
        self.title.setStyleSheet("font-size: 12.5pt; font-weight: 600; border: none;")
        self.subtitle = QLabel()
        self.subtitle.setObjectName("muted")
        self.subtitle.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.subtitle.setStyleSheet("border: none;")
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(16, 12, 16, 14)
        self.body.setSpacing(6)
        head = QVBoxLayout()
        head.setSpacing(1)
        head.addWidget(self.title)
        head.addWidget(self.subtitle)
        self.body.addLayout(head)
        self.extra = QVBoxLayout()
        self.body.addLayout(self.extra)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(14)
        self.grid.setVerticalSpacing(5)
        self.body.addLayout(self.grid)
        self.body.addStretch(1)
        self.values: dict[str, QLabel] = {}

    def add_row(self, key: str, label: str, tooltip: str = "") -> QLabel:
        n = len(self.values)
        row, col = divmod(n, self._columns)
        name = QLabel(label)
        name.setObjectName("muted")
        name.setStyleSheet("border: none;")
        if tooltip:
            name.setToolTip(tooltip)
        value = QLabel(fmt.UNKNOWN)
        value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        value.setStyleSheet("border: none; font-weight: 500;")
        self.grid.addWidget(name, row, col * 2)
        self.grid.addWidget(value, row, col * 2 + 1)
        for c in range(self._columns):
            self.grid.setColumnStretch(c * 2 + 1, 1)
        self.values[key] = value
        return value

    def set_value(self, key: str, text: str, why_unknown: str = "", tooltip: str = "") -> None:
        label = self.values[key]
        unknown = text.startswith(fmt.UNKNOWN)
        label.setText(text)
        label.setEnabled(not unknown)
        label.setToolTip(why_unknown if unknown and why_unknown else tooltip)

    def text(self, key: str) -> str:
        return self.values[key].text()


class GpuCard(InfoCard):
    """Every figure NVML gives for one GPU, with a VRAM bar."""

    def __init__(self, columns: int = 2, parent: QWidget | None = None) -> None:
        super().__init__("GPU", columns=columns, parent=parent)
        self.vram_bar = usage_bar()
        self.extra.addWidget(self.vram_bar)
        rows = [  # read left to right, top to bottom, in two or three columns
            ("total", "Total VRAM", ""),
            ("free", "Free", ""),
            ("used", "Used", "all memory in use on the GPU, the driver's reserve included"),
            ("others", "Other processes", "VRAM held by processes that are not QuantLens"),
            ("bandwidth", "Bandwidth", "bus width / 8 x max memory clock x 2 (double data rate)"),
            ("cc", "Compute capability", ""),
            ("temp", "Temperature", ""),
            ("util", "Utilisation", "GPU busy / memory controller busy, last sample period"),
            ("power", "Power", "draw of enforced limit"),
        ]
        for key, label, tip in rows:
            self.add_row(key, label, tip)
        self.gpu: GpuInfo | None = None
        self.lost = False

    def set_gpu(self, gpu: GpuInfo, lost: bool = False) -> None:
        self.gpu, self.lost = gpu, lost
        name = gpu.name or "unknown GPU"
        self.title.setText(f"GPU {gpu.index} · {name}" + ("  —  LOST" if lost else ""))
        self.title.setStyleSheet(
            "font-size: 12.5pt; font-weight: 600; border: none;"
            + (" color: #d64545;" if lost else "")
        )
        uuid = gpu.uuid or fmt.UNKNOWN
        short = uuid if len(uuid) < 20 else f"{uuid[:13]}…{uuid[-4:]}"
        self.subtitle.setText(f"PCI {gpu.pci_bus_id or fmt.UNKNOWN}  ·  {short}")
        self.subtitle.setToolTip(uuid)
        why = gpu.unknown.get
        if gpu.total_bytes and gpu.used_bytes is not None:
            self.vram_bar.setValue(round(1000 * gpu.used_bytes / gpu.total_bytes))
            self.vram_bar.setFormat(
                f"{fmt.gib(gpu.used_bytes)} used of {fmt.gib(gpu.total_bytes)}"
                f"  ({100 * gpu.used_bytes / gpu.total_bytes:.1f} %)"
            )
        else:
            self.vram_bar.setValue(0)
            self.vram_bar.setFormat("VRAM use unknown")
        self.set_value("total", fmt.gib(gpu.total_bytes), why("total_bytes", ""))
        self.set_value("free", fmt.gib(gpu.free_bytes), why("free_bytes", ""))
        self.set_value("used", fmt.gib(gpu.used_bytes), why("used_bytes", ""))
        self.set_value("others", fmt.gib(gpu.used_by_others_bytes), why("used_by_others_bytes", ""))
        bw_why = why("memory_bus_width_bits", "") or why("max_mem_clock_mhz", "")
        self.set_value(
            "bandwidth", fmt.tbps(gpu.bandwidth_bytes_per_s), bw_why, fmt.bandwidth_detail(gpu)
        )
        self.set_value(
            "cc", gpu.compute_capability_text or fmt.UNKNOWN, why("compute_capability", "")
        )
        self.set_value("temp", fmt.celsius(gpu.temperature_c), why("temperature_c", ""))
        if gpu.utilization_gpu_pct is None:
            util = fmt.UNKNOWN
        else:
            util = (
                f"GPU {fmt.percent(gpu.utilization_gpu_pct)} · "
                f"memory {fmt.percent(gpu.utilization_mem_pct)}"
            )
        self.set_value("util", util, why("utilization_gpu_pct", ""))
        self.set_value(
            "power", fmt.power_text(gpu), why("power_usage_w", "") or why("power_limit_w", "")
        )
        if "handle" in gpu.unknown:
            self.subtitle.setText(f"could not be opened: {gpu.unknown['handle']}")
        self.setEnabled(not lost)


class HostCard(InfoCard):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Host", parent=parent)
        self.add_row("cpu", "CPU")
        self.add_row("cores", "Cores")
        self.add_row("ram_total", "RAM total")
        self.add_row("ram_available", "RAM available", "what the OS can give without swapping")
        self.ram_bar = usage_bar()
        self.extra.addWidget(self.ram_bar)

    def set_host(self, host: HostInfo | None) -> None:
        if host is None:
            self.subtitle.setText("could not be read")
            return
        self.subtitle.setText(host.os_name)
        self.set_value("cpu", host.cpu_model or fmt.UNKNOWN)
        self.set_value("cores", fmt.cores_text(host))
        self.set_value("ram_total", fmt.gib(host.ram_total_bytes))
        self.set_value("ram_available", fmt.gib(host.ram_available_bytes))
        if host.ram_total_bytes and host.ram_available_bytes is not None:
            used = host.ram_total_bytes - host.ram_available_bytes
            self.ram_bar.setValue(round(1000 * used / host.ram_total_bytes))
            self.ram_bar.setFormat(f"{fmt.gib(used)} in use of {fmt.gib(host.ram_total_bytes)}")
        else:
            self.ram_bar.setFormat("RAM use unknown")


class LlamaCard(InfoCard):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("llama.cpp build", parent=parent)
        self.subtitle.setText("the engine behind llama-cpp-python")
        self.add_row("version", "llama-cpp-python")
        self.add_row("offload", "GPU offload")
        self.add_row("devices", "Devices", "the ggml backend devices this build registers")
        self.add_row("features", "CPU features", "llama_print_system_info()")
        self.values["devices"].setWordWrap(True)
        self.values["features"].setWordWrap(True)

    def set_build(self, build: LlamaBuild | None) -> None:
        if build is None:
            for key in self.values:
                self.set_value(key, "checking…")
            return
        self.set_value("version", build.version or fmt.UNKNOWN, build.error)
        self.set_value("offload", fmt.offload_text(build), build.error)
        devices = ", ".join(f"{d.name} ({d.description})" for d in build.devices)
        self.set_value("devices", devices or fmt.UNKNOWN, build.error)
        features = _feature_summary(build.system_info)
        self.set_value("features", features or fmt.UNKNOWN, build.error, build.system_info)


def _feature_summary(system_info: str) -> str:
    """``CPU : AVX = 1 | AVX2 = 1 | ...`` -> ``AVX, AVX2, ...`` (the ones switched on)."""
    on = []
    for part in system_info.replace(":", "|").split("|"):
        name, _, value = part.partition("=")
        if value.strip() == "1":
            on.append(name.strip())
    return ", ".join(on)
