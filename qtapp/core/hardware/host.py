"""The host: CPU model, cores and RAM, with no dependency beyond the standard library.

Linux reads ``/proc/cpuinfo`` and ``/proc/meminfo``; macOS asks ``sysctl`` and ``vm_stat``;
Windows asks the registry and ``GlobalMemoryStatusEx`` through ctypes. Anything that cannot be
read is ``None`` (shown as unknown), never an exception.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostInfo:
    """The machine the app runs on. ``usable_cores`` honours CPU affinity (containers, taskset)."""

    cpu_model: str | None
    physical_cores: int | None
    logical_cores: int | None
    usable_cores: int | None
    ram_total_bytes: int | None
    ram_available_bytes: int | None
    os_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostInfo:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _sysctl(name: str) -> str | None:
    try:
        done = subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=2, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


# -- Linux ---------------------------------------------------------------------------------------
def parse_cpuinfo(text: str) -> tuple[str | None, int | None]:
    """CPU model and physical core count from /proc/cpuinfo (unique physical id + core id pairs)."""
    model = None
    cores: set[tuple[str, str]] = set()
    physical = core = None
    for line in text.splitlines() + [""]:
        if not line.strip():
            if core is not None:
                cores.add((physical or "0", core))
            physical = core = None
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "cpu model") and model is None and value:
            model = value
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
    return model, (len(cores) or None)


def parse_meminfo(text: str) -> tuple[int | None, int | None]:
    """MemTotal and MemAvailable from /proc/meminfo, in bytes."""
    values: dict[str, int] = {}
    for match in re.finditer(r"^(\w+):\s+(\d+)\s*kB", text, re.MULTILINE):
        values[match.group(1)] = int(match.group(2)) * 1024
    available = values.get("MemAvailable")
    if available is None and "MemFree" in values:
        available = values["MemFree"] + values.get("Cached", 0) + values.get("Buffers", 0)
    return values.get("MemTotal"), available


def cgroup_memory(root: str = "/sys/fs/cgroup") -> tuple[int | None, int | None]:
    """The container's memory limit and usage (cgroup v2, else v1); None where there is none."""
    for limit_name, usage_name in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        limit_text = _read(f"{root}/{limit_name}")
        if limit_text is None:
            continue
        limit = _int_or_none(limit_text.strip())
        if limit is None or limit >= 1 << 60:  # "max", or v1's "unlimited" near 2**63
            return None, None
        return limit, _int_or_none((_read(f"{root}/{usage_name}") or "").strip())
    return None, None


def apply_cgroup_limit(
    total: int | None, available: int | None, limit: int | None, usage: int | None
) -> tuple[int | None, int | None]:
    """A container sees the host's /proc/meminfo; its real budget is the cgroup limit."""
    if limit is None or (total is not None and limit >= total):
        return total, available
    left = max(limit - usage, 0) if usage is not None else limit
    return limit, left if available is None else min(available, left)


def _linux() -> tuple[str | None, int | None, int | None, int | None]:
    model, physical = parse_cpuinfo(_read("/proc/cpuinfo") or "")
    total, available = parse_meminfo(_read("/proc/meminfo") or "")
    total, available = apply_cgroup_limit(total, available, *cgroup_memory())
    return model, physical, total, available


# -- macOS ---------------------------------------------------------------------------------------
def _mac() -> tuple[str | None, int | None, int | None, int | None]:
    model = _sysctl("machdep.cpu.brand_string")
    physical = _int_or_none(_sysctl("hw.physicalcpu"))
    total = _int_or_none(_sysctl("hw.memsize"))
    available = None
    try:
        out = subprocess.run(["vm_stat"], capture_output=True, text=True, timeout=2).stdout
        page = int(re.search(r"page size of (\d+)", out).group(1))  # type: ignore[union-attr]
        pages = {m.group(1): int(m.group(2)) for m in re.finditer(r"Pages (\w+):\s+(\d+)", out)}
        free = sum(pages.get(k, 0) for k in ("free", "inactive", "speculative", "purgeable"))
        available = free * page
    except (OSError, subprocess.SubprocessError, AttributeError, ValueError):
        pass
    return model, physical, total, available


# -- Windows -------------------------------------------------------------------------------------
def _windows() -> tuple[str | None, int | None, int | None, int | None]:
    import ctypes

    model = None
    try:
        import winreg

        key = winreg.OpenKey(  # type: ignore[attr-defined]
            winreg.HKEY_LOCAL_MACHINE,  # type: ignore[attr-defined]
            r"HARDWARE\DESCRIPTION\System\CentralProcessor\0",
        )
        model = str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()  # type: ignore[attr-defined]
    except OSError:
        model = platform.processor() or None

    class MemoryStatus(ctypes.Structure):
        _fields_ = [
            ("dwLength", ctypes.c_ulong),
            ("dwMemoryLoad", ctypes.c_ulong),
            ("ullTotalPhys", ctypes.c_ulonglong),
            ("ullAvailPhys", ctypes.c_ulonglong),
            ("ullTotalPageFile", ctypes.c_ulonglong),
            ("ullAvailPageFile", ctypes.c_ulonglong),
            ("ullTotalVirtual", ctypes.c_ulonglong),
            ("ullAvailVirtual", ctypes.c_ulonglong),
            ("ullAvailExtendedVirtual", ctypes.c_ulonglong),
        ]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    total = available = None
    if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        total, available = int(status.ullTotalPhys), int(status.ullAvailPhys)
    return model, None, total, available


def read_host_info() -> HostInfo:
    """What this machine has. Never raises: unreadable figures are ``None``."""
    try:
        if sys.platform.startswith("linux"):
            model, physical, total, available = _linux()
        elif sys.platform == "darwin":
            model, physical, total, available = _mac()
        elif os.name == "nt":
            model, physical, total, available = _windows()
        else:
            model, physical, total, available = None, None, None, None
    except Exception:  # noqa: BLE001 - a probe must never take the window down
        log.exception("Reading the host's CPU and RAM failed")
        model, physical, total, available = None, None, None, None
    logical = os.cpu_count()
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = logical
    return HostInfo(
        cpu_model=model or platform.processor() or None,
        physical_cores=physical,
        logical_cores=logical,
        usable_cores=usable,
        ram_total_bytes=total,
        ram_available_bytes=available,
        os_name=f"{platform.system()} {platform.release()}".strip(),
    )
