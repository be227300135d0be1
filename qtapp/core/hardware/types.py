"""The hardware report's data: plain frozen dataclasses, JSON in and out.

Import them from :mod:`qtapp.core.hardware.probe`, which also holds the probe that fills them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from qtapp.core.hardware.host import HostInfo
from qtapp.core.hardware.llama_build import CUDA_INSTALL_COMMAND, LlamaBuild

STATUSES = ("ok", "cpu-only", "gpu-lost", "error")
GIB = 1024**3


@dataclass(frozen=True)
class GpuInfo:
    """One NVIDIA GPU as NVML reports it. ``None`` means unknown; ``unknown`` says why."""

    index: int
    name: str | None = None
    uuid: str | None = None
    pci_bus_id: str | None = None
    total_bytes: int | None = None
    free_bytes: int | None = None
    used_bytes: int | None = None
    used_by_others_bytes: int | None = None
    memory_bus_width_bits: int | None = None
    max_mem_clock_mhz: int | None = None
    compute_capability: tuple[int, int] | None = None
    temperature_c: int | None = None
    utilization_gpu_pct: int | None = None
    utilization_mem_pct: int | None = None
    power_usage_w: float | None = None
    power_limit_w: float | None = None
    unknown: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def bandwidth_bytes_per_s(self) -> float | None:
        """Peak memory bandwidth: bus width / 8 x max memory clock x 2 (double data rate)."""
        if not self.memory_bus_width_bits or not self.max_mem_clock_mhz:
            return None
        return self.memory_bus_width_bits / 8 * self.max_mem_clock_mhz * 1e6 * 2

    @property
    def compute_capability_text(self) -> str | None:
        cc = self.compute_capability
        return f"{cc[0]}.{cc[1]}" if cc else None

    @property
    def label(self) -> str:
        return f"GPU {self.index}: {self.name or 'unknown GPU'}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["compute_capability"] = (
            list(self.compute_capability) if self.compute_capability else None
        )
        data["bandwidth_bytes_per_s"] = self.bandwidth_bytes_per_s
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GpuInfo:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        cc = values.get("compute_capability")
        values["compute_capability"] = tuple(cc) if cc else None
        values["unknown"] = dict(values.get("unknown") or {})
        return cls(**values)


@dataclass(frozen=True)
class HardwareReport:
    """Everything the app knows about this machine at ``taken_at`` (seconds since the epoch)."""

    status: str  # "ok" | "cpu-only" | "gpu-lost" | "error"
    reason: str = ""
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpus: tuple[GpuInfo, ...] = ()
    lost_gpus: tuple[GpuInfo, ...] = ()  # last known figures of GPUs that stopped answering
    host: HostInfo | None = None
    llama: LlamaBuild | None = None
    source: str = "nvml"  # "nvml" | "replay"
    source_detail: str = ""  # for a replay: the snapshot file and when it was recorded
    taken_at: float = 0.0

    @property
    def is_replay(self) -> bool:
        return self.source == "replay"

    @property
    def total_vram_bytes(self) -> int:
        return sum(g.total_bytes or 0 for g in self.gpus)

    @property
    def needs_cuda_build(self) -> bool:
        """GPUs are there but the llama.cpp build cannot offload to them."""
        return (
            bool(self.gpus) and self.llama is not None and self.llama.supports_gpu_offload is False
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "driver_version": self.driver_version,
            "cuda_driver_version": self.cuda_driver_version,
            "gpus": [g.to_dict() for g in self.gpus],
            "lost_gpus": [g.to_dict() for g in self.lost_gpus],
            "host": self.host.to_dict() if self.host else None,
            "llama": self.llama.to_dict() if self.llama else None,
            "needs_cuda_build": self.needs_cuda_build,
            "cuda_install_command": CUDA_INSTALL_COMMAND if self.needs_cuda_build else None,
            "source": self.source,
            "source_detail": self.source_detail,
            "taken_at": self.taken_at,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HardwareReport:
        return cls(
            status=str(data.get("status", "error")),
            reason=str(data.get("reason", "")),
            driver_version=data.get("driver_version"),
            cuda_driver_version=data.get("cuda_driver_version"),
            gpus=tuple(GpuInfo.from_dict(g) for g in data.get("gpus") or ()),
            lost_gpus=tuple(GpuInfo.from_dict(g) for g in data.get("lost_gpus") or ()),
            host=HostInfo.from_dict(data["host"]) if data.get("host") else None,
            llama=LlamaBuild.from_dict(data["llama"]) if data.get("llama") else None,
            source=str(data.get("source", "nvml")),
            source_detail=str(data.get("source_detail", "")),
            taken_at=float(data.get("taken_at") or 0.0),
        )
