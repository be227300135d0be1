"""The NVML probe: fills a :class:`~qtapp.core.hardware.types.HardwareReport`.

:class:`HardwareProbe` works against any object with pynvml's API: the real ``pynvml`` (from
nvidia-ml-py, imported lazily) or :mod:`qtapp.core.hardware.nvml_replay`. It never raises: no
driver, no NVML library or zero GPUs give status ``"cpu-only"``; a GPU that stops answering
(``GPU is lost``) or disappears between two polls gives ``"gpu-lost"``; any other NVML failure
gives ``"error"``. A single query that fails leaves that one figure ``None`` (shown as unknown)
and records why in :attr:`GpuInfo.unknown`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from qtapp.core.hardware.host import HostInfo, read_host_info
from qtapp.core.hardware.llama_build import LlamaBuild
from qtapp.core.hardware.nvml_replay import ReplayError
from qtapp.core.hardware.types import GpuInfo, HardwareReport

log = logging.getLogger(__name__)

# NVML error codes (the same in every NVML version)
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_GPU_IS_LOST = 15


def default_nvml_loader() -> Any:
    """The replay when ``QUANTLENS_NVML_REPLAY`` is set, else the real ``pynvml`` (lazily)."""
    from qtapp.core.hardware.nvml_replay import replay_from_env

    stand_in = replay_from_env()
    if stand_in is not None:
        return stand_in
    import pynvml

    return pynvml


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _cuda_version_text(value: int) -> str:
    """NVML's 13000 -> "13.0", 12040 -> "12.4"."""
    return f"{value // 1000}.{value % 1000 // 10}"


class _GpuLost(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class HardwareProbe:
    """Reads NVML once with :meth:`report`, then cheaply with :meth:`poll` (about once a second).

    ``loader`` returns a pynvml-like object (or raises ImportError); ``own_pids`` lists the
    processes whose VRAM is ours (this app and its workers), so the rest is "used by others".
    """

    def __init__(
        self,
        loader: Callable[[], Any] | None = None,
        *,
        host_reader: Callable[[], HostInfo] = read_host_info,
        own_pids: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        self._loader = loader or default_nvml_loader
        self._host_reader = host_reader
        self._own_pids = own_pids or (lambda: (os.getpid(),))
        self._nvml: Any = None
        self._handles: list[tuple[Any, GpuInfo]] = []  # handle, last known figures
        # key -> (last figures, why); sticky until the GPU answers again or the app restarts
        self._lost: dict[str, tuple[GpuInfo, str]] = {}
        self._last: HardwareReport | None = None
        self._llama: LlamaBuild | None = None

    @property
    def last(self) -> HardwareReport | None:
        return self._last

    # -- public ----------------------------------------------------------------------------
    def report(self, llama: LlamaBuild | None = None) -> HardwareReport:
        """A full reading: (re)starts NVML, lists the GPUs. Never raises."""
        if llama is not None:
            self._llama = llama
        try:
            self._last = self._full_report()
        except Exception as exc:  # noqa: BLE001 - the window must never see an exception
            log.exception("Hardware probe failed")
            self._last = self._make(
                "error", f"Reading the GPUs failed: {type(exc).__name__}: {exc}"
            )
        return self._last

    def poll(self) -> HardwareReport:
        """Refresh the figures that move (memory, utilisation, temperature, power, host RAM)."""
        if self._last is None:
            return self.report()
        try:
            self._last = self._poll()
        except Exception as exc:  # noqa: BLE001
            log.exception("Hardware poll failed")
            self._last = self._make(
                "error", f"Reading the GPUs failed: {type(exc).__name__}: {exc}"
            )
        return self._last

    def with_llama(self, llama: LlamaBuild | None) -> HardwareReport:
        """The last report with the llama.cpp build info filled in (it comes from a child job)."""
        self._llama = llama
        if self._last is None:
            return self.report()
        self._last = replace(self._last, llama=llama)
        return self._last

    def close(self) -> None:
        nvml, self._nvml = self._nvml, None
        self._handles = []
        if nvml is not None:
            try:
                nvml.nvmlShutdown()
            except Exception as exc:  # noqa: BLE001
                log.debug("nvmlShutdown: %s", exc)

    # -- reading ---------------------------------------------------------------------------
    def _make(self, status: str, reason: str = "", **kw: Any) -> HardwareReport:
        try:
            host = self._host_reader()
        except Exception:  # noqa: BLE001
            log.exception("Reading host info failed")
            host = None
        nvml = kw.pop("nvml", self._nvml)
        source, detail = "nvml", ""
        if getattr(nvml, "is_replay", False):
            source = "replay"
            detail = f"{nvml.path} (recorded {nvml.taken_at})"
        return HardwareReport(
            status=status,
            reason=reason,
            host=host,
            llama=self._llama,
            lost_gpus=tuple(info for info, _ in self._lost.values()),
            source=source,
            source_detail=detail,
            taken_at=time.time(),
            **kw,
        )

    def _is(self, exc: BaseException, code: int) -> bool:
        return getattr(exc, "value", None) == code

    def _full_report(self) -> HardwareReport:
        self.close()
        try:
            nvml = self._loader()
        except ImportError as exc:
            return self._make(
                "cpu-only",
                "The NVML binding for Python (package nvidia-ml-py) is not installed, so GPUs "
                f"cannot be listed ({exc}). Install it with: pip install nvidia-ml-py",
                nvml=None,
            )
        except ReplayError as exc:
            return self._make("error", str(exc), nvml=None)
        error_cls = getattr(nvml, "NVMLError", Exception)
        try:
            nvml.nvmlInit()
        except error_cls as exc:
            if self._is(exc, _DRIVER_NOT_LOADED):
                why = f"No NVIDIA driver is loaded (NVML: {exc})."
                return self._make("cpu-only", why, nvml=nvml)
            if self._is(exc, _LIBRARY_NOT_FOUND):
                why = (
                    f"The NVIDIA driver library libnvidia-ml was not found (NVML: {exc}): "
                    "no NVIDIA driver is installed."
                )
                return self._make("cpu-only", why, nvml=nvml)
            return self._make("error", f"NVML could not start: {exc}.", nvml=nvml)
        self._nvml = nvml
        driver = self._query(None, "driver", nvml.nvmlSystemGetDriverVersion)
        cuda = self._query(None, "cuda", nvml.nvmlSystemGetCudaDriverVersion)
        versions = {
            "driver_version": _text(driver) if driver is not None else None,
            "cuda_driver_version": _cuda_version_text(int(cuda)) if cuda is not None else None,
        }
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except error_cls as exc:
            return self._make("error", f"NVML could not count the GPUs: {exc}.", **versions)
        gpus: list[GpuInfo] = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                info = self._read_gpu(index, handle)
            except _GpuLost as lost:
                self._lose(GpuInfo(index=index), lost.detail)
                continue
            except error_cls as exc:
                if self._is(exc, _GPU_IS_LOST):
                    self._lose(GpuInfo(index=index), f"NVML says '{exc}'")
                else:  # shown with every figure unknown, and why
                    gpus.append(GpuInfo(index=index, unknown={"handle": f"NVML: {exc}"}))
                continue
            if self._key(info) in self._lost:  # it came back (after a reset): not lost any more
                del self._lost[self._key(info)]
            self._handles.append((handle, info))
            gpus.append(info)
        return self._status_report(gpus, versions)

    def _status_report(self, gpus: list[GpuInfo], versions: dict[str, Any]) -> HardwareReport:
        if self._lost:
            return self._make(
                "gpu-lost",
                " ".join(why for _, why in self._lost.values()),
                gpus=tuple(gpus),
                **versions,
            )
        if not gpus:
            return self._make("cpu-only", "NVML is running but sees no NVIDIA GPU.", **versions)
        return self._make("ok", "", gpus=tuple(gpus), **versions)

    def _poll(self) -> HardwareReport:
        nvml, last = self._nvml, self._last
        assert last is not None
        versions = {
            "driver_version": last.driver_version,
            "cuda_driver_version": last.cuda_driver_version,
        }
        if nvml is None:  # no NVML: only the host's free RAM moves
            return replace(last, host=self._safe_host(last.host), taken_at=time.time())
        error_cls = getattr(nvml, "NVMLError", Exception)
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except error_cls as exc:
            if not self._is(exc, _GPU_IS_LOST):
                return self._make("error", f"NVML could not count the GPUs: {exc}.", **versions)
            for _handle, info in self._handles:  # the driver lost them all
                self._lose(info, f"NVML says '{exc}'")
            self._handles = []
            return self._status_report([], versions)
        if count < len(self._handles):
            self._find_vanished(nvml, count)
        gpus: list[GpuInfo] = []
        kept: list[tuple[Any, GpuInfo]] = []
        for handle, old in self._handles:
            try:
                info = self._read_dynamic(handle, old)
            except _GpuLost as lost:
                self._lose(old, lost.detail)
                continue
            kept.append((handle, info))
            gpus.append(info)
        self._handles = kept
        return self._status_report(gpus, versions)

    def _find_vanished(self, nvml: Any, count: int) -> None:
        """The device count dropped: the GPUs whose UUID no index answers with are gone."""
        present: set[str] = set()
        for index in range(count):
            try:
                present.add(_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index))))
            except Exception:  # noqa: BLE001 - unreadable: cannot tell which one went
                log.debug("GPU %d unreadable while looking for a vanished GPU", index)
                return  # the per-GPU queries will still catch a "GPU is lost"
        before = len(self._handles)
        for handle, info in list(self._handles):
            if info.uuid not in present:
                self._handles.remove((handle, info))
                self._lose(
                    info,
                    "it is no longer listed by NVML (the device count dropped "
                    f"from {before} to {count})",
                )

    def _safe_host(self, old: HostInfo | None) -> HostInfo | None:
        try:
            return self._host_reader()
        except Exception:  # noqa: BLE001
            return old

    @staticmethod
    def _key(info: GpuInfo) -> str:
        return info.uuid or info.pci_bus_id or f"index {info.index}"

    def _lose(self, info: GpuInfo, detail: str) -> None:
        key = self._key(info)
        if key in self._lost:
            return
        where = ", ".join(x for x in (info.name, info.pci_bus_id) if x)
        stamp = time.strftime("%H:%M:%S")
        reason = (
            f"GPU {info.index}{f' ({where})' if where else ''} was lost at {stamp}: {detail}. "
            "Its memory is not counted; a driver reload or a reboot usually brings it back."
        )
        self._lost[key] = (info, reason)
        log.warning("GPU lost: %s", reason)

    def _query(
        self, unknown: dict[str, str] | None, name: str, fn: Callable[..., Any], *args: Any
    ) -> Any:
        """One NVML call: GPU-is-lost escalates; other NVML errors make just this field unknown."""
        error_cls = getattr(self._nvml, "NVMLError", Exception)
        try:
            return fn(*args)
        except error_cls as exc:
            if self._is(exc, _GPU_IS_LOST):
                raise _GpuLost(f"NVML says '{exc}'") from exc
            if unknown is not None:
                unknown[name] = f"{getattr(fn, '__name__', name)}: {exc}"
            log.debug("NVML %s failed: %s", name, exc)
            return None

    def _read_gpu(self, index: int, handle: Any) -> GpuInfo:
        nvml = self._nvml
        unknown: dict[str, str] = {}
        q = self._query
        pci = q(unknown, "pci_bus_id", nvml.nvmlDeviceGetPciInfo, handle)
        cc = q(unknown, "compute_capability", nvml.nvmlDeviceGetCudaComputeCapability, handle)
        name = q(unknown, "name", nvml.nvmlDeviceGetName, handle)
        uuid = q(unknown, "uuid", nvml.nvmlDeviceGetUUID, handle)
        static = GpuInfo(
            index=index,
            name=_text(name) if name is not None else None,
            uuid=_text(uuid) if uuid is not None else None,
            pci_bus_id=_text(pci.busId) if pci is not None else None,
            memory_bus_width_bits=q(
                unknown, "memory_bus_width_bits", nvml.nvmlDeviceGetMemoryBusWidth, handle
            ),
            max_mem_clock_mhz=q(
                unknown,
                "max_mem_clock_mhz",
                nvml.nvmlDeviceGetMaxClockInfo,
                handle,
                nvml.NVML_CLOCK_MEM,
            ),
            compute_capability=(int(cc[0]), int(cc[1])) if cc is not None else None,
            unknown=unknown,
        )
        return self._read_dynamic(handle, static)

    _DYNAMIC = (
        "total_bytes",
        "free_bytes",
        "used_bytes",
        "used_by_others_bytes",
        "temperature_c",
        "utilization_gpu_pct",
        "utilization_mem_pct",
        "power_usage_w",
        "power_limit_w",
    )

    def _read_dynamic(self, handle: Any, old: GpuInfo) -> GpuInfo:
        nvml, q = self._nvml, self._query
        unknown = {k: v for k, v in old.unknown.items() if k not in self._DYNAMIC}
        mem = q(unknown, "total_bytes", nvml.nvmlDeviceGetMemoryInfo, handle)
        if mem is None:
            unknown["free_bytes"] = unknown["used_bytes"] = unknown["total_bytes"]
        util = q(unknown, "utilization_gpu_pct", nvml.nvmlDeviceGetUtilizationRates, handle)
        if util is None:
            unknown["utilization_mem_pct"] = unknown["utilization_gpu_pct"]
        power = q(unknown, "power_usage_w", nvml.nvmlDeviceGetPowerUsage, handle)
        limit = q(unknown, "power_limit_w", nvml.nvmlDeviceGetEnforcedPowerLimit, handle)
        return replace(
            old,
            total_bytes=int(mem.total) if mem is not None else None,
            free_bytes=int(mem.free) if mem is not None else None,
            used_bytes=int(mem.used) if mem is not None else None,
            used_by_others_bytes=self._others(handle, unknown),
            temperature_c=q(
                unknown,
                "temperature_c",
                nvml.nvmlDeviceGetTemperature,
                handle,
                nvml.NVML_TEMPERATURE_GPU,
            ),
            utilization_gpu_pct=int(util.gpu) if util is not None else None,
            utilization_mem_pct=int(util.memory) if util is not None else None,
            power_usage_w=power / 1000 if power is not None else None,
            power_limit_w=limit / 1000 if limit is not None else None,
            unknown=unknown,
        )

    def _others(self, handle: Any, unknown: dict[str, str]) -> int | None:
        """VRAM held by processes that are not ours (None when NVML will not say)."""
        nvml, q = self._nvml, self._query
        seen: dict[int, int | None] = {}
        for fn_name in (
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
        ):
            fn = getattr(nvml, fn_name, None)
            procs = q(unknown, "used_by_others_bytes", fn, handle) if fn else None
            if procs is None:
                return None
            for proc in procs:
                seen[int(proc.pid)] = proc.usedGpuMemory
        own = set(self._own_pids())
        others = [used for pid, used in seen.items() if pid not in own]
        if any(used is None for used in others):
            unknown["used_by_others_bytes"] = "NVML does not report per-process memory here"
            return None
        return int(sum(int(u) for u in others if u is not None))


def probe_hardware(
    loader: Callable[[], Any] | None = None, llama: LlamaBuild | None = None
) -> HardwareReport:
    """One full reading, NVML closed afterwards (for the CLI and scripts)."""
    probe = HardwareProbe(loader)
    try:
        return probe.report(llama)
    finally:
        probe.close()
