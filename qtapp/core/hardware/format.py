"""How hardware figures are written, the same in the window and in ``quantlens hw``.

Memory in GiB with one decimal, bandwidth in TB/s (decimal, as vendors rate it), temperature
in °C, power in W, utilisation in %. ``None`` (a figure NVML would not give) is "unknown".
"""

from __future__ import annotations

from qtapp.core.hardware.probe import GpuInfo, HardwareReport, HostInfo, LlamaBuild

UNKNOWN = "unknown"
GIB = 1024**3


def gib(value: int | float | None) -> str:
    return UNKNOWN if value is None else f"{value / GIB:.1f} GiB"


def tbps(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value / 1e12:.2f} TB/s"


def celsius(value: int | None) -> str:
    return UNKNOWN if value is None else f"{value} °C"


def watts(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:.0f} W"


def percent(value: int | float | None) -> str:
    return UNKNOWN if value is None else f"{value:.0f} %"


def power_text(gpu: GpuInfo) -> str:
    if gpu.power_usage_w is None and gpu.power_limit_w is None:
        return UNKNOWN
    if gpu.power_usage_w is None:
        return f"{UNKNOWN} (limit {watts(gpu.power_limit_w)})"
    if gpu.power_limit_w is None:
        return f"{watts(gpu.power_usage_w)} (limit {UNKNOWN})"
    return f"{watts(gpu.power_usage_w)} of {watts(gpu.power_limit_w)}"


def bandwidth_detail(gpu: GpuInfo) -> str:
    bits = f"{gpu.memory_bus_width_bits}-bit" if gpu.memory_bus_width_bits else "unknown-width"
    clock = f"{gpu.max_mem_clock_mhz} MHz" if gpu.max_mem_clock_mhz else "unknown clock"
    return f"{bits} bus x {clock} x 2"


def cores_text(host: HostInfo) -> str:
    parts = []
    if host.physical_cores:
        parts.append(f"{host.physical_cores} physical")
    if host.logical_cores:
        parts.append(f"{host.logical_cores} logical")
    text = " / ".join(parts) or UNKNOWN
    if host.usable_cores and host.logical_cores and host.usable_cores < host.logical_cores:
        text += f" ({host.usable_cores} usable by this app)"
    return text


def offload_text(build: LlamaBuild | None) -> str:
    if build is None:
        return "checking…"
    if build.supports_gpu_offload is None:
        return UNKNOWN
    if build.supports_gpu_offload:
        gpus = ", ".join(d.name for d in build.gpu_devices)
        return f"yes ({gpus})" if gpus else "yes"
    return "no (CPU-only build)"


def status_title(report: HardwareReport) -> str:
    return {
        "ok": f"{len(report.gpus)} NVIDIA GPU{'s' if len(report.gpus) != 1 else ''}",
        "cpu-only": "CPU only",
        "gpu-lost": "GPU lost",
        "error": "GPU error",
    }.get(report.status, report.status)
