"""The hardware probe against the real NVML library (runs only where NVML sees a GPU).

The figures are compared with what pynvml itself answers; faults are injected by wrapping the
real module, so the probe's handling runs against real handles and real exception classes.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from qtapp.core.hardware.probe import HardwareProbe, probe_hardware


def _real_nvml() -> tuple[Any, str]:
    try:
        import pynvml
    except ImportError as exc:
        return None, f"pynvml (nvidia-ml-py) is not installed: {exc}"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return None, f"NVML is not usable on this machine ({exc}): no NVIDIA GPU/driver"
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    if count == 0:
        return None, "NVML sees no GPU on this machine"
    return pynvml, ""


NVML, WHY = _real_nvml()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(NVML is None, reason=f"needs a real GPU: {WHY}")]


class Wrapped:
    """The real pynvml with one query failing, or one GPU 'lost' after some polls."""

    def __init__(self, fail: str | None = None, lose_after: int | None = None) -> None:
        self._fail, self._lose_after, self._polls = fail, lose_after, 0
        self._lost_handle: Any = None

    def __getattr__(self, name: str) -> Any:
        real = getattr(NVML, name)
        if not callable(real) or not name.startswith("nvml") or isinstance(real, type):
            return real
        if name == "nvmlDeviceGetCount":

            def count() -> int:
                self._polls += 1
                return int(real())

            return count

        def call(*args: Any) -> Any:
            if name == self._fail:
                raise NVML.NVMLError(NVML.NVML_ERROR_UNKNOWN)
            lost = self._lose_after is not None and self._polls > self._lose_after
            if lost and args and args[0] is self._lost_handle:
                raise NVML.NVMLError(NVML.NVML_ERROR_GPU_IS_LOST)
            out = real(*args)
            if name == "nvmlDeviceGetHandleByIndex" and self._lost_handle is None:
                self._lost_handle = out  # GPU 0 is the one that will be lost
            return out

        return call


def _direct() -> list[SimpleNamespace]:
    NVML.nvmlInit()
    try:
        out = []
        for i in range(NVML.nvmlDeviceGetCount()):
            h = NVML.nvmlDeviceGetHandleByIndex(i)
            out.append(
                SimpleNamespace(
                    name=NVML.nvmlDeviceGetName(h),
                    uuid=NVML.nvmlDeviceGetUUID(h),
                    total=NVML.nvmlDeviceGetMemoryInfo(h).total,
                    bus=NVML.nvmlDeviceGetMemoryBusWidth(h),
                    clock=NVML.nvmlDeviceGetMaxClockInfo(h, NVML.NVML_CLOCK_MEM),
                    cc=tuple(NVML.nvmlDeviceGetCudaComputeCapability(h)),
                )
            )
        return out
    finally:
        NVML.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_real_gpus_match_what_pynvml_answers() -> None:
    report = probe_hardware(lambda: NVML)
    direct = _direct()
    assert report.status == "ok", report.reason
    assert report.source == "nvml"
    assert report.driver_version and report.cuda_driver_version
    assert len(report.gpus) == len(direct)
    for gpu, real in zip(report.gpus, direct, strict=True):
        assert gpu.name == _text(real.name)
        assert gpu.uuid == _text(real.uuid)
        assert gpu.total_bytes == real.total
        assert gpu.memory_bus_width_bits == real.bus
        assert gpu.max_mem_clock_mhz == real.clock
        assert gpu.compute_capability == real.cc
        assert gpu.bandwidth_bytes_per_s == real.bus / 8 * real.clock * 1e6 * 2
        assert gpu.free_bytes is not None and gpu.used_bytes is not None
        assert gpu.free_bytes + gpu.used_bytes <= gpu.total_bytes
        assert gpu.pci_bus_id


def test_real_poll_keeps_the_gpus() -> None:
    probe = HardwareProbe(lambda: NVML)
    first = probe.report()
    again = probe.poll()
    probe.close()
    assert again.status == "ok"
    assert [g.uuid for g in again.gpus] == [g.uuid for g in first.gpus]


def test_real_error_on_one_query_leaves_that_field_unknown() -> None:
    report = probe_hardware(lambda: Wrapped(fail="nvmlDeviceGetTemperature"))
    assert report.status == "ok"
    for gpu in report.gpus:
        assert gpu.temperature_c is None
        assert "temperature_c" in gpu.unknown
        assert gpu.total_bytes  # the rest is still read


def test_real_gpu_lost_between_two_polls() -> None:
    probe = HardwareProbe(lambda: Wrapped(lose_after=1))
    first = probe.report()
    lost = probe.poll()
    probe.close()
    assert first.status == "ok"
    assert lost.status == "gpu-lost"
    assert "GPU 0" in lost.reason
    assert [g.index for g in lost.lost_gpus] == [0]
    assert len(lost.gpus) == len(first.gpus) - 1
