"""A stand-in for the ``pynvml`` module that replays snapshots recorded on a real GPU.

It exposes the functions, constants and exception classes that
:class:`qtapp.core.hardware.probe.HardwareProbe` uses, with the same names and behaviour as
nvidia-ml-py, and it can inject the faults a real machine shows: no driver, no NVML library, an
error on one query, a GPU lost after some polls. No figure is invented: a two-GPU machine is two
copies of the recorded GPU that differ only in index, UUID and PCI bus id (as the fixture says).

``QUANTLENS_NVML_REPLAY=<snapshot.json>`` makes the app use it (demos, screenshots, machines
without a GPU); ``QUANTLENS_NVML_REPLAY_GPUS=2`` replays two GPUs and
``QUANTLENS_NVML_REPLAY_FAULT`` takes a fault spec (see :func:`parse_faults`).
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPLAY_ENV = "QUANTLENS_NVML_REPLAY"
REPLAY_GPUS_ENV = "QUANTLENS_NVML_REPLAY_GPUS"
REPLAY_FAULT_ENV = "QUANTLENS_NVML_REPLAY_FAULT"

# -- constants, as in pynvml ---------------------------------------------------------------------
NVML_SUCCESS = 0
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_VALUE_NOT_AVAILABLE_ulonglong = SimpleNamespace(value=0xFFFFFFFFFFFFFFFF)

_ERRORS: dict[str, tuple[int, str]] = {
    "Uninitialized": (1, "Uninitialized"),
    "InvalidArgument": (2, "Invalid Argument"),
    "NotSupported": (3, "Not Supported"),
    "NoPermission": (4, "Insufficient Permissions"),
    "NotFound": (6, "Not Found"),
    "DriverNotLoaded": (9, "Driver Not Loaded"),
    "Timeout": (10, "Timeout"),
    "LibraryNotFound": (12, "NVML Shared Library Not Found"),
    "FunctionNotFound": (13, "Function Not Found"),
    "GpuIsLost": (15, "GPU is lost"),
    "LibRmVersionMismatch": (18, "RM has detected an NVML/RM version mismatch."),
    "Unknown": (999, "Unknown Error"),
}
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999


class NVMLError(Exception):
    """Like pynvml's: ``NVMLError(code)`` becomes the subclass for that code; ``.value`` is it."""

    _by_value: dict[int, type[NVMLError]] = {}
    _text: dict[int, str] = {}
    value: int

    def __new__(cls, value: int = NVML_ERROR_UNKNOWN) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._by_value.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value: int = NVML_ERROR_UNKNOWN) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return NVMLError._text.get(self.value, f"NVML Error with code {self.value}")


def _error_class(name: str, code: int, text: str) -> type[NVMLError]:
    def new(cls: type[NVMLError], *args: Any) -> NVMLError:
        return NVMLError.__new__(cls, code)

    def init(self: NVMLError, *args: Any) -> None:
        Exception.__init__(self, code)

    cls = type(f"NVMLError_{name}", (NVMLError,), {"__new__": new, "__init__": init})
    NVMLError._by_value[code] = cls
    NVMLError._text[code] = text
    return cls


_CLASSES = {f"NVMLError_{n}": _error_class(n, code, text) for n, (code, text) in _ERRORS.items()}
globals().update(_CLASSES)
NVMLError_DriverNotLoaded = _CLASSES["NVMLError_DriverNotLoaded"]
NVMLError_LibraryNotFound = _CLASSES["NVMLError_LibraryNotFound"]
NVMLError_GpuIsLost = _CLASSES["NVMLError_GpuIsLost"]
NVMLError_NotSupported = _CLASSES["NVMLError_NotSupported"]


# -- snapshots -----------------------------------------------------------------------------------
def load_snapshot(path: str | Path) -> dict[str, Any]:
    """Read a snapshot recorded by ``tests/fixtures/nvml`` 's recorder (JSON, NVML's units)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        raise ValueError(f"{path} is not an NVML snapshot (no 'devices' list)")
    return data


def with_gpu_count(snapshot: dict[str, Any], count: int) -> dict[str, Any]:
    """A machine with ``count`` copies of the snapshot's first GPU.

    The copies differ only in index, UUID (last byte) and PCI device number, as a second card of
    the same model in the next slot would; every measured figure is the recorded one.
    """
    base = snapshot["devices"][0]
    devices = []
    for k in range(count):
        dev = copy.deepcopy(base)
        dev["index"] = k
        if k:
            uuid = str(base["uuid"])
            dev["uuid"] = f"{uuid[:-2]}{(int(uuid[-2:], 16) + k) % 256:02x}"
            pci = dev["pci"]
            pci["device"] = int(pci["device"]) + k
            domain, bus = int(pci["domain"]), int(pci["bus"])
            pci["busId"] = f"{domain:08X}:{bus:02X}:{pci['device']:02X}.0"
            pci["busIdLegacy"] = f"{domain:04X}:{bus:02X}:{pci['device']:02X}.0"
        devices.append(dev)
    out = copy.deepcopy(snapshot)
    out["devices"] = devices
    out["device_count"] = count
    return out


class ReplayError(ValueError):
    """The snapshot named by ``QUANTLENS_NVML_REPLAY`` (or its options) cannot be used."""


@dataclass
class Faults:
    """What goes wrong in the replay."""

    no_driver: bool = False  # nvmlInit: Driver Not Loaded
    library_missing: bool = False  # nvmlInit: NVML Shared Library Not Found
    fail_query: str | None = None  # this function raises (e.g. "nvmlDeviceGetTemperature")
    fail_index: int | None = None  # ... only for this GPU (None: every GPU)
    fail_code: int = NVML_ERROR_UNKNOWN
    lose_after_polls: int | None = None  # GPU ``lose_index`` is lost from poll N+1 on
    lose_index: int = -1
    lose_mode: str = "error"  # "error": its queries raise GPU is lost; "vanish": count drops


def parse_faults(spec: str) -> Faults:
    """``no-driver``, ``library-missing``, ``error:<query>[@gpu]``, ``lost-after:<n>[:vanish]``,
    comma-separated."""
    faults = Faults()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if part == "no-driver":
            faults.no_driver = True
        elif part == "library-missing":
            faults.library_missing = True
        elif part.startswith("error:"):
            query, _, index = part[len("error:") :].partition("@")
            faults.fail_query = query
            faults.fail_index = int(index) if index else None
        elif part.startswith("lost-after:"):
            count, _, mode = part[len("lost-after:") :].partition(":")
            faults.lose_after_polls = int(count)
            faults.lose_mode = mode or "error"
        else:
            raise ValueError(f"unknown NVML replay fault {part!r}")
    return faults


@dataclass(frozen=True)
class _Handle:
    index: int  # index into the snapshot's devices (stable even when another GPU vanishes)


class ReplayNvml:
    """A pynvml-like object. Each ``nvmlDeviceGetCount`` call counts as one poll."""

    is_replay = True

    def __init__(
        self, snapshot: dict[str, Any], faults: Faults | None = None, path: str | Path = ""
    ) -> None:
        self.snapshot = snapshot
        self.faults = faults or Faults()
        self.path = str(path)
        self.taken_at = str(snapshot.get("taken_at", ""))
        self.polls = 0
        self.initialised = False
        self.calls: list[str] = []

    # pynvml's names, reachable as attributes of the object as they are of the module
    NVMLError = NVMLError
    NVML_SUCCESS = NVML_SUCCESS
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_CLOCK_GRAPHICS = NVML_CLOCK_GRAPHICS
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_CLOCK_MEM = NVML_CLOCK_MEM
    NVML_ERROR_UNINITIALIZED = NVML_ERROR_UNINITIALIZED
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_UNKNOWN = NVML_ERROR_UNKNOWN

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def _devices(self) -> list[dict[str, Any]]:
        return list(self.snapshot["devices"])

    def _lost_index(self) -> int | None:
        f = self.faults
        if f.lose_after_polls is None or self.polls <= f.lose_after_polls:
            return None
        return f.lose_index % len(self._devices)

    def _check(self, name: str, handle: _Handle | None = None) -> dict[str, Any] | None:
        self.calls.append(name)
        if not self.initialised:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if handle is not None and handle.index == self._lost_index():
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        f = self.faults
        if f.fail_query == name and (
            handle is None or f.fail_index is None or f.fail_index == handle.index
        ):
            raise NVMLError(f.fail_code)
        return self._devices[handle.index] if handle is not None else None

    def _dev(self, name: str, handle: _Handle) -> dict[str, Any]:
        dev = self._check(name, handle)
        assert dev is not None
        return dev

    # -- system --------------------------------------------------------------------------------
    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        self.calls.append("nvmlInit")
        if self.faults.library_missing:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        if self.faults.no_driver:
            raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
        self.initialised = True

    def nvmlShutdown(self) -> None:  # noqa: N802
        self._check("nvmlShutdown")
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        self._check("nvmlSystemGetDriverVersion")
        return str(self.snapshot["driver_version"])

    def nvmlSystemGetNVMLVersion(self) -> str:  # noqa: N802
        self._check("nvmlSystemGetNVMLVersion")
        return str(self.snapshot["nvml_version"])

    def nvmlSystemGetCudaDriverVersion(self) -> int:  # noqa: N802
        self._check("nvmlSystemGetCudaDriverVersion")
        return int(self.snapshot["cuda_driver_version"])

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        self._check("nvmlDeviceGetCount")
        self.polls += 1
        lost = self._lost_index()
        if lost is not None and self.faults.lose_mode == "vanish":
            return len(self._devices) - 1
        return len(self._devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:  # noqa: N802
        self._check("nvmlDeviceGetHandleByIndex")
        order = list(range(len(self._devices)))
        lost = self._lost_index()
        if lost is not None and self.faults.lose_mode == "vanish":
            order.remove(lost)
        if not 0 <= index < len(order):
            raise NVMLError(2)  # Invalid Argument, as NVML answers an index out of range
        handle = _Handle(order[index])
        if handle.index == lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return handle

    # -- per device ----------------------------------------------------------------------------
    def nvmlDeviceGetName(self, handle: _Handle) -> str:  # noqa: N802
        return str(self._dev("nvmlDeviceGetName", handle)["name"])

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:  # noqa: N802
        return str(self._dev("nvmlDeviceGetUUID", handle)["uuid"])

    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(**self._dev("nvmlDeviceGetPciInfo", handle)["pci"])

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(**self._dev("nvmlDeviceGetMemoryInfo", handle)["memory_info"])

    def nvmlDeviceGetMemoryBusWidth(self, handle: _Handle) -> int:  # noqa: N802
        return int(self._dev("nvmlDeviceGetMemoryBusWidth", handle)["memory_bus_width_bits"])

    def nvmlDeviceGetMaxClockInfo(self, handle: _Handle, kind: int) -> int:  # noqa: N802
        dev = self._dev("nvmlDeviceGetMaxClockInfo", handle)
        key = {NVML_CLOCK_MEM: "max_clock_mem_mhz", NVML_CLOCK_SM: "max_clock_sm_mhz"}.get(kind)
        if key is None or key not in dev:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(dev[key])

    def nvmlDeviceGetCudaComputeCapability(self, handle: _Handle) -> tuple[int, int]:  # noqa: N802
        major, minor = self._dev("nvmlDeviceGetCudaComputeCapability", handle)[
            "cuda_compute_capability"
        ]
        return int(major), int(minor)

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:  # noqa: N802
        dev = self._dev("nvmlDeviceGetTemperature", handle)
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(dev["temperature_c"])

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(**self._dev("nvmlDeviceGetUtilizationRates", handle)["utilization"])

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:  # noqa: N802
        return int(self._dev("nvmlDeviceGetPowerUsage", handle)["power_usage_mw"])

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:  # noqa: N802
        return int(self._dev("nvmlDeviceGetEnforcedPowerLimit", handle)["power_limit_mw"])

    def nvmlDeviceGetPowerManagementLimit(self, handle: _Handle) -> int:  # noqa: N802
        return int(self._dev("nvmlDeviceGetPowerManagementLimit", handle)["power_limit_mw"])

    def _processes(self, name: str, handle: _Handle) -> list[SimpleNamespace]:
        out = []
        for proc in self._dev(name, handle).get("processes") or []:
            used = proc.get("usedGpuMemory", proc.get("used_memory"))
            out.append(SimpleNamespace(pid=int(proc.get("pid", 0)), usedGpuMemory=used))
        return out

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[SimpleNamespace]:  # noqa: N802
        return self._processes("nvmlDeviceGetComputeRunningProcesses", handle)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: _Handle) -> list[SimpleNamespace]:  # noqa: N802
        # the recorder lists each process once; graphics-only processes are not recorded apart
        self._dev("nvmlDeviceGetGraphicsRunningProcesses", handle)
        return []


for _name, _cls in _CLASSES.items():
    setattr(ReplayNvml, _name, _cls)


def replay(
    path: str | Path, gpus: int | None = None, faults: Faults | str | None = None
) -> ReplayNvml:
    """A replay of the snapshot at ``path``, optionally as ``gpus`` GPUs, with ``faults``."""
    snapshot = load_snapshot(path)
    if gpus is not None and gpus != len(snapshot["devices"]):
        snapshot = with_gpu_count(snapshot, gpus)
    if isinstance(faults, str):
        faults = parse_faults(faults)
    return ReplayNvml(snapshot, faults, path)


def replay_from_env() -> ReplayNvml | None:
    """The replay that ``QUANTLENS_NVML_REPLAY`` asks for, or None when it is not set."""
    path = os.environ.get(REPLAY_ENV)
    if not path:
        return None
    gpus = os.environ.get(REPLAY_GPUS_ENV)
    try:
        return replay(path, int(gpus) if gpus else None, os.environ.get(REPLAY_FAULT_ENV) or None)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReplayError(
            f"{REPLAY_ENV}={path} could not be replayed ({type(exc).__name__}: {exc}). Point it "
            "at a snapshot such as tests/fixtures/nvml/h200-idle.json, or unset it."
        ) from exc
