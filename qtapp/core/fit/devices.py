"""The devices a plan fills: CUDA GPUs (from NVML or a "what if" spec like ``2x48GiB``) and the CPU.

GPUs are numbered CUDA0.. in NVML's (PCI bus) order, the order llama.cpp sees with
``CUDA_DEVICE_ORDER=PCI_BUS_ID``. A device's budget is its free memory minus the safety margin
(1024 MiB by default, like llama.cpp's ``--fit``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from qtapp.core.errors import QuantLensError

# at import, not in the first plan: its own imports (statistics: decimal, fractions, random)
# were 13 ms of the window's first plan on the GUI thread
from qtapp.core.fit.cuda_overhead import MeasuredOverhead, measured_overheads

MIB = 1024**2
GIB = 1024**3
DEFAULT_MARGIN = 1024 * MIB
#: what a CUDA device loses beyond llama.cpp's buffers (context + libraries), measured on an H200
CUDA_OVERHEAD_QUANT = 613 * MIB
CUDA_OVERHEAD_F16 = 826 * MIB
#: a typical GPU's bandwidth when a what-if spec gives none (bytes/s): an RTX 4090-class card
DEFAULT_GPU_BANDWIDTH = 1.0e12
DEFAULT_HOST_BANDWIDTH = 40e9  # dual-channel DDR5, for CPU layers when nothing better is known

_SPEC = re.compile(
    r"^\s*(?:(\d+)\s*[x\u00d7*]\s*)?(\d+(?:\.\d+)?)\s*(gib|gb|g|mib|mb|m|tib|tb)\s*$", re.I
)


@dataclass(frozen=True)
class Device:
    name: str  # "CUDA0", "CPU"
    total_bytes: int
    free_bytes: int
    bandwidth: float  # bytes/s, peak
    is_gpu: bool = True
    label: str = ""
    #: CUDA's own use of this GPU (quantized model, float model) as the user's evaluations
    #: measured it on this GPU model and driver (fit/cuda_overhead.py); None: built-in figure
    measured_overhead: tuple[int | None, int | None] = (None, None)
    overhead_source: str = ""

    def budget(self, margin: int) -> int:
        return max(self.free_bytes - (margin if self.is_gpu else 0), 0)

    def cuda_overhead(self, float_matrices: bool) -> int:
        """What CUDA takes on this GPU beyond llama.cpp's buffers."""
        measured = self.measured_overhead[1 if float_matrices else 0]
        if measured is not None:
            return measured
        return CUDA_OVERHEAD_F16 if float_matrices else CUDA_OVERHEAD_QUANT


def _unit(u: str | None) -> int:
    u = (u or "gib").lower()
    if u.startswith("t"):
        return 1024 * GIB
    if u.startswith("m"):
        return MIB
    return GIB


def parse_gpu_spec(spec: str) -> list[Device]:
    """``"2x48GiB"``, ``"1x24GiB"``, ``"24GiB, 12GiB"`` -> hypothetical CUDA devices."""
    devices: list[Device] = []
    for part in [p for p in re.split(r"[,+;]", spec) if p.strip()]:
        m = _SPEC.match(part)
        if not m and re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", part):
            raise QuantLensError(
                f"The GPU spec {part.strip()!r} has no unit (GPUs or GiB?).",
                f"Write it like {part.strip()}GiB or 2x{part.strip()}GiB.",
            )
        if not m:
            raise QuantLensError(
                f"Cannot read the GPU spec {part.strip()!r}.",
                "Write it like 2x48GiB, 1x24GiB or 24GiB,12GiB.",
            )
        count = int(m[1] or 1)
        size = int(float(m[2]) * _unit(m[3]))
        if count < 1 or count > 64 or size <= 0 or size > 64 * 1024 * GIB:
            raise QuantLensError(
                f"The GPU spec {part.strip()!r} is out of range.",
                "Use 1 to 64 GPUs of up to 64 TiB each.",
            )
        for _ in range(count):
            i = len(devices)
            devices.append(
                Device(
                    f"CUDA{i}",
                    size,
                    size,
                    DEFAULT_GPU_BANDWIDTH,
                    True,
                    f"what-if GPU {i}: {size / GIB:g} GiB",
                )
            )
    if not devices:
        raise QuantLensError("The GPU spec is empty.", "Write it like 2x48GiB.")
    return devices


def parse_memory_size(text: str, what: str = "host RAM") -> int:
    """``"256GiB"`` -> bytes, for one memory size such as the what-if host RAM."""
    m = _SPEC.match(text or "")
    if not m or m[1]:
        raise QuantLensError(
            f"Cannot read the {what} size {text!r}.", "Write it like 256GiB or 512MiB."
        )
    size = int(float(m[2]) * _unit(m[3]))
    if size <= 0 or size > 1024 * 1024 * GIB:
        raise QuantLensError(f"The {what} size {text!r} is out of range.", "Use 1 MiB to 1 PiB.")
    return size


def devices_from_report(report: Any, use: list[int] | None = None) -> list[Device]:
    """CUDA devices from a ``qtapp.core.hardware.probe.HardwareReport`` (NVML or replay), each
    with the CUDA overhead the user's evaluations measured on its model and driver, if any."""
    driver = getattr(report, "driver_version", None)
    overheads = measured_overheads() if driver and getattr(report, "gpus", None) else {}
    out: list[Device] = []
    for gpu in getattr(report, "gpus", ()) or ():
        idx = int(getattr(gpu, "index", len(out)))
        if use is not None and idx not in use:
            continue
        total = int(getattr(gpu, "total_bytes", 0) or 0)
        free = getattr(gpu, "free_bytes", None)
        bw = getattr(gpu, "bandwidth_bytes_per_s", None)
        out.append(
            Device(
                f"CUDA{len(out)}",
                total,
                int(free if free is not None else total),
                float(bw or DEFAULT_GPU_BANDWIDTH),
                True,
                f"GPU {idx}: {getattr(gpu, 'name', None) or 'GPU'}",
            )
        )
        out[-1] = with_measured_overhead(out[-1], driver, overheads)
    return out


def host_device(report: Any = None) -> Device:
    """The CPU as a device: available RAM (from the report, or read here), a bandwidth guess."""
    total = avail = 0
    host = getattr(report, "host", None) if report is not None else None
    if host is None:
        try:
            from qtapp.core.hardware.host import read_host_info

            host = read_host_info()
        except Exception:  # noqa: BLE001 - no host info is a plan without a RAM check
            host = None
    if host is not None:
        total = int(getattr(host, "ram_total_bytes", 0) or 0)
        avail = int(getattr(host, "ram_available_bytes", 0) or total)
    return Device("CPU", total, avail, DEFAULT_HOST_BANDWIDTH, False, "host RAM")


def probe_devices() -> list[Device]:
    """Real GPUs via the hardware probe, or none (guarded: the probe may be absent or fail)."""
    try:
        from qtapp.core.hardware.probe import probe_hardware

        return devices_from_report(probe_hardware())
    except Exception:  # noqa: BLE001 - no NVML, no GPU: plan for the CPU only
        return []


def gpu_name(device: Device) -> str:
    """``"GPU 0: NVIDIA H200"`` -> ``"NVIDIA H200"`` (a what-if GPU has no such label)."""
    return device.label.split(": ", 1)[1] if ": " in device.label else ""


def with_measured_overhead(
    device: Device, driver: str | None, overheads: dict[tuple[str, str], MeasuredOverhead]
) -> Device:
    """``device`` with the overhead the user's runs measured on its model and driver (if any)."""
    m = overheads.get((gpu_name(device), driver or "")) if device.is_gpu and driver else None
    if m is None or m.runs == 0:
        return device
    return dataclasses.replace(
        device, measured_overhead=(m.value(False), m.value(True)), overhead_source=m.source()
    )


def overhead_text(gpus: Iterable[Device]) -> str:
    """Where the plan's CUDA overhead comes from, in a line."""
    measured = [d for d in gpus if d.is_gpu and d.overhead_source]
    builtin = "CUDA overhead: measured on an H200 (613 / 826 MiB)"
    if not measured:
        return builtin
    parts = []
    for d in measured:
        q, f = d.measured_overhead
        sizes = " / ".join(f"{v / MIB:.0f} MiB" for v in (q, f) if v is not None)
        parts.append(f"{d.name} {sizes}, {d.overhead_source}")
    return "CUDA overhead: " + "; ".join(parts)
