"""The hardware probe against the NVML stand-in that replays a real H200 snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qtapp.core.hardware import nvml_replay
from qtapp.core.hardware.host import (
    HostInfo,
    apply_cgroup_limit,
    cgroup_memory,
    parse_cpuinfo,
    parse_meminfo,
    read_host_info,
)
from qtapp.core.hardware.llama_build import CUDA_INSTALL_COMMAND, LlamaBuild
from qtapp.core.hardware.probe import (
    GpuInfo,
    HardwareProbe,
    HardwareReport,
    probe_hardware,
)

SNAPSHOT = Path(__file__).parents[1] / "fixtures" / "nvml" / "h200-idle.json"
RECORDED = json.loads(SNAPSHOT.read_text())
DEV = RECORDED["devices"][0]


def replay(gpus: int | None = None, faults: str | None = None) -> nvml_replay.ReplayNvml:
    return nvml_replay.replay(SNAPSHOT, gpus, faults)


def assert_matches_recording(gpu: GpuInfo, index: int = 0) -> None:
    """Every figure equals what NVML returned on the real H200, converted to our units."""
    assert gpu.index == index
    assert gpu.name == DEV["name"] == "NVIDIA H200"
    assert gpu.total_bytes == DEV["memory_info"]["total"]
    assert gpu.free_bytes == DEV["memory_info"]["free"]
    assert gpu.used_bytes == DEV["memory_info"]["used"]
    assert gpu.used_by_others_bytes == 0  # no processes were running
    assert gpu.memory_bus_width_bits == DEV["memory_bus_width_bits"] == 6016
    assert gpu.max_mem_clock_mhz == DEV["max_clock_mem_mhz"] == 3201
    assert gpu.compute_capability == tuple(DEV["cuda_compute_capability"]) == (9, 0)
    assert gpu.temperature_c == DEV["temperature_c"]
    assert gpu.utilization_gpu_pct == DEV["utilization"]["gpu"]
    assert gpu.utilization_mem_pct == DEV["utilization"]["memory"]
    assert gpu.power_usage_w == pytest.approx(DEV["power_usage_mw"] / 1000)
    assert gpu.power_limit_w == pytest.approx(DEV["power_limit_mw"] / 1000)
    assert gpu.unknown == {}


def test_one_gpu_figures_equal_the_recording() -> None:
    report = probe_hardware(replay)
    assert report.status == "ok" and report.reason == ""
    assert report.driver_version == RECORDED["driver_version"]
    assert report.cuda_driver_version == "13.0"  # NVML's 13000
    assert len(report.gpus) == 1
    gpu = report.gpus[0]
    assert_matches_recording(gpu)
    assert gpu.uuid == DEV["uuid"]
    assert gpu.pci_bus_id == DEV["pci"]["busId"]
    assert report.source == "replay" and str(SNAPSHOT) in report.source_detail


def test_bandwidth_is_bus_width_times_clock_times_two() -> None:
    gpu = probe_hardware(replay).gpus[0]
    assert gpu.bandwidth_bytes_per_s == 6016 / 8 * 3201e6 * 2
    assert round(gpu.bandwidth_bytes_per_s / 1e12, 2) == 4.81  # the H200's rated 4.8 TB/s
    from qtapp.core.hardware.format import tbps

    assert tbps(gpu.bandwidth_bytes_per_s) == "4.81 TB/s"


def test_two_gpus_are_two_records_with_their_own_ids() -> None:
    report = probe_hardware(lambda: replay(gpus=2))
    assert report.status == "ok"
    assert [g.index for g in report.gpus] == [0, 1]
    for index, gpu in enumerate(report.gpus):
        assert_matches_recording(gpu, index)
    assert len({g.uuid for g in report.gpus}) == 2
    assert len({g.pci_bus_id for g in report.gpus}) == 2
    assert report.gpus[0].uuid == DEV["uuid"]
    assert report.total_vram_bytes == 2 * DEV["memory_info"]["total"]


def test_no_driver_is_cpu_only_with_the_reason() -> None:
    report = probe_hardware(lambda: replay(faults="no-driver"))
    assert report.status == "cpu-only"
    assert "No NVIDIA driver" in report.reason and "Driver Not Loaded" in report.reason
    assert report.gpus == ()
    assert report.host is not None


def test_nvml_library_missing_is_cpu_only() -> None:
    report = probe_hardware(lambda: replay(faults="library-missing"))
    assert report.status == "cpu-only"
    assert "libnvidia-ml" in report.reason


def test_python_binding_missing_is_cpu_only() -> None:
    def no_pynvml() -> object:
        raise ImportError("No module named 'pynvml'")

    report = probe_hardware(no_pynvml)
    assert report.status == "cpu-only"
    assert "nvidia-ml-py" in report.reason
    assert report.host is not None


def test_an_error_on_one_query_leaves_only_that_field_unknown() -> None:
    report = probe_hardware(lambda: replay(gpus=2, faults="error:nvmlDeviceGetTemperature@1"))
    assert report.status == "ok"
    first, second = report.gpus
    assert_matches_recording(first, 0)
    assert second.temperature_c is None
    assert "Unknown Error" in second.unknown["temperature_c"]
    assert second.total_bytes == DEV["memory_info"]["total"]  # the rest is still there
    assert second.power_usage_w == pytest.approx(DEV["power_usage_mw"] / 1000)
    assert second.bandwidth_bytes_per_s == first.bandwidth_bytes_per_s


def test_an_error_on_memory_info_marks_the_memory_figures_unknown() -> None:
    gpu = probe_hardware(lambda: replay(faults="error:nvmlDeviceGetMemoryInfo")).gpus[0]
    assert gpu.total_bytes is gpu.free_bytes is gpu.used_bytes is None
    assert {"total_bytes", "free_bytes", "used_bytes"} <= set(gpu.unknown)
    assert gpu.temperature_c == DEV["temperature_c"]


@pytest.mark.parametrize("mode", ["error", "vanish"])
def test_a_gpu_lost_between_two_polls(mode: str) -> None:
    probe = HardwareProbe(lambda: replay(gpus=2, faults=f"lost-after:2:{mode}"))
    first = probe.report()  # poll 1
    assert first.status == "ok" and len(first.gpus) == 2
    second = probe.poll()  # poll 2: still there
    assert second.status == "ok" and len(second.gpus) == 2
    third = probe.poll()  # poll 3: GPU 1 is gone
    assert third.status == "gpu-lost"
    assert "GPU 1" in third.reason and DEV["name"] in third.reason
    assert ("GPU is lost" if mode == "error" else "device count dropped") in third.reason
    assert [g.index for g in third.gpus] == [0]
    assert_matches_recording(third.gpus[0], 0)
    assert [g.index for g in third.lost_gpus] == [1]
    fourth = probe.poll()  # it stays lost, once, with the same reason
    assert fourth.status == "gpu-lost" and fourth.reason == third.reason
    assert len(fourth.lost_gpus) == 1
    probe.close()


def test_poll_refreshes_without_restarting_nvml() -> None:
    nvml = replay()
    probe = HardwareProbe(lambda: nvml)
    probe.report()
    inits = nvml.calls.count("nvmlInit")
    report = probe.poll()
    assert nvml.calls.count("nvmlInit") == inits == 1
    last_count = len(nvml.calls) - 1 - nvml.calls[::-1].index("nvmlDeviceGetCount")
    assert nvml.calls.count("nvmlDeviceGetCount") == 2
    assert "nvmlDeviceGetName" not in nvml.calls[last_count:]  # static figures are not re-read
    assert "nvmlDeviceGetMemoryInfo" in nvml.calls[last_count:]
    assert_matches_recording(report.gpus[0])
    probe.close()
    assert not nvml.initialised


def test_a_probe_that_blows_up_reports_error_instead_of_raising() -> None:
    class Broken:
        NVMLError = RuntimeError

        def nvmlInit(self) -> None:  # noqa: N802
            raise ZeroDivisionError("boom")

    report = probe_hardware(Broken)
    assert report.status == "error"
    assert "boom" in report.reason


def test_processes_of_others_are_counted_but_ours_are_not() -> None:
    snapshot = nvml_replay.load_snapshot(SNAPSHOT)
    snapshot["devices"][0]["processes"] = [
        {"pid": 4242, "usedGpuMemory": 2 * 1024**3},
        {"pid": 777, "usedGpuMemory": 1024**3},
    ]
    nvml = nvml_replay.ReplayNvml(snapshot)
    report = HardwareProbe(lambda: nvml, own_pids=lambda: {777}).report()
    assert report.gpus[0].used_by_others_bytes == 2 * 1024**3


def test_report_round_trips_through_json() -> None:
    build = LlamaBuild(version="0.3.36", supports_gpu_offload=False, system_info="CPU : AVX = 1")
    report = probe_hardware(lambda: replay(gpus=2), llama=build)
    data = json.loads(report.to_json())
    assert data["gpus"][0]["bandwidth_bytes_per_s"] == pytest.approx(4.814304e12)
    assert data["needs_cuda_build"] is True
    assert data["cuda_install_command"] == CUDA_INSTALL_COMMAND
    again = HardwareReport.from_dict(data)
    assert again.gpus == report.gpus and again.llama == report.llama
    assert again.host == report.host


def test_cuda_install_command_is_the_exact_one() -> None:
    assert CUDA_INSTALL_COMMAND == (
        'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir '
        "llama-cpp-python==0.3.36"
    )


def test_replay_fault_spec_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(nvml_replay.REPLAY_ENV, str(SNAPSHOT))
    monkeypatch.setenv(nvml_replay.REPLAY_GPUS_ENV, "2")
    monkeypatch.setenv(nvml_replay.REPLAY_FAULT_ENV, "error:nvmlDeviceGetPowerUsage")
    report = probe_hardware()  # the default loader honours QUANTLENS_NVML_REPLAY
    assert report.is_replay and len(report.gpus) == 2
    assert all(g.power_usage_w is None for g in report.gpus)
    with pytest.raises(ValueError, match="unknown NVML replay fault"):
        nvml_replay.parse_faults("melt")


def test_host_parsers_and_reader() -> None:
    cpuinfo = (
        "processor\t: 0\nmodel name\t: Test CPU 9000\nphysical id\t: 0\ncore id\t: 0\n\n"
        "processor\t: 1\nmodel name\t: Test CPU 9000\nphysical id\t: 0\ncore id\t: 0\n\n"
        "processor\t: 2\nmodel name\t: Test CPU 9000\nphysical id\t: 0\ncore id\t: 1\n\n"
    )
    assert parse_cpuinfo(cpuinfo) == ("Test CPU 9000", 2)
    assert parse_meminfo("MemTotal: 1024 kB\nMemFree: 10 kB\nMemAvailable: 512 kB\n") == (
        1024 * 1024,
        512 * 1024,
    )
    host = read_host_info()
    assert isinstance(host, HostInfo)
    assert host.logical_cores and host.logical_cores >= 1
    assert host.ram_total_bytes and host.ram_available_bytes is not None
    assert 0 < host.ram_available_bytes <= host.ram_total_bytes


def test_a_container_memory_limit_caps_the_host_ram(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("8589934592\n")
    (tmp_path / "memory.current").write_text("2147483648\n")
    limit, usage = cgroup_memory(str(tmp_path))
    assert (limit, usage) == (8 * 1024**3, 2 * 1024**3)
    assert apply_cgroup_limit(64 * 1024**3, 60 * 1024**3, limit, usage) == (
        8 * 1024**3,
        6 * 1024**3,
    )
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_memory(str(tmp_path)) == (None, None)
    assert apply_cgroup_limit(64, 60, None, None) == (64, 60)


def test_a_bad_replay_path_is_an_error_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(nvml_replay.REPLAY_ENV, str(tmp_path / "missing.json"))
    report = probe_hardware()
    assert report.status == "error"
    assert "QUANTLENS_NVML_REPLAY" in report.reason and "unset it" in report.reason


def test_every_gpu_lost_at_once_leaves_no_gpu_and_says_so() -> None:
    nvml = replay(gpus=2)
    probe = HardwareProbe(lambda: nvml)
    assert probe.report().status == "ok"
    nvml.faults.fail_query = "nvmlDeviceGetCount"  # the driver lost every GPU
    nvml.faults.fail_code = nvml_replay.NVML_ERROR_GPU_IS_LOST
    report = probe.poll()
    assert report.status == "gpu-lost" and report.gpus == ()
    assert [g.index for g in report.lost_gpus] == [0, 1]
    assert "GPU 0" in report.reason and "GPU 1" in report.reason
