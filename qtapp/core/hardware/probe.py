"""GPU and host discovery: what this machine can run.

The one import for the rest of the app: the report's dataclasses
(:mod:`qtapp.core.hardware.types`), the NVML probe (:mod:`qtapp.core.hardware.nvml_probe`), the
host reader (:mod:`qtapp.core.hardware.host`) and the llama.cpp build info
(:mod:`qtapp.core.hardware.llama_build`).
Nothing here imports Qt or, until a probe runs, pynvml.
"""

from __future__ import annotations

from qtapp.core.hardware.host import HostInfo, read_host_info
from qtapp.core.hardware.llama_build import CUDA_INSTALL_COMMAND, BackendDevice, LlamaBuild
from qtapp.core.hardware.nvml_probe import HardwareProbe, default_nvml_loader, probe_hardware
from qtapp.core.hardware.types import GIB, STATUSES, GpuInfo, HardwareReport

__all__ = [
    "CUDA_INSTALL_COMMAND",
    "GIB",
    "STATUSES",
    "BackendDevice",
    "GpuInfo",
    "HardwareProbe",
    "HardwareReport",
    "HostInfo",
    "LlamaBuild",
    "default_nvml_loader",
    "probe_hardware",
    "read_host_info",
]
