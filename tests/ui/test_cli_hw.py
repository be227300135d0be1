"""``quantlens hw``: JSON for scripts, a table for people."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "tests" / "fixtures" / "nvml" / "h200-idle.json"

GPU_FIELDS = {
    "index", "name", "uuid", "pci_bus_id", "total_bytes", "free_bytes", "used_bytes",
    "used_by_others_bytes", "memory_bus_width_bits", "max_mem_clock_mhz",
    "bandwidth_bytes_per_s", "compute_capability", "temperature_c", "utilization_gpu_pct",
    "utilization_mem_pct", "power_usage_w", "power_limit_w",
}  # fmt: skip


def quantlens(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    for name in ("QUANTLENS_NVML_REPLAY", "QUANTLENS_NVML_REPLAY_GPUS"):
        if name not in env:
            full_env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "qtapp", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_hw_json_with_two_replayed_gpus_has_every_field() -> None:
    done = quantlens(
        "hw", "--json", QUANTLENS_NVML_REPLAY=str(SNAPSHOT), QUANTLENS_NVML_REPLAY_GPUS="2"
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["status"] == "ok"
    assert data["source"] == "replay"
    assert data["driver_version"] == "580.159.04" and data["cuda_driver_version"] == "13.0"
    assert len(data["gpus"]) == 2
    for gpu in data["gpus"]:
        assert set(gpu) >= GPU_FIELDS
        assert round(gpu["bandwidth_bytes_per_s"] / 1e12, 2) == 4.81
        assert gpu["total_bytes"] == 150754820096
    assert {"cpu_model", "logical_cores", "ram_total_bytes", "ram_available_bytes"} <= set(
        data["host"]
    )
    llama = data["llama"]  # asked from a worker child
    assert llama["version"] == "0.3.36"
    assert isinstance(llama["supports_gpu_offload"], bool)
    assert data["needs_cuda_build"] == (not llama["supports_gpu_offload"])


def test_hw_table_says_cpu_only_or_lists_gpus() -> None:
    done = quantlens("hw", "--no-llama")
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("Hardware: ")
    assert "Host" in done.stdout and "RAM" in done.stdout
    assert "CPU only" in first or "NVIDIA GPU" in first


def test_hw_table_shows_the_replay_and_the_cuda_command() -> None:
    done = quantlens("hw", QUANTLENS_NVML_REPLAY=str(SNAPSHOT))
    assert done.returncode == 0, done.stderr
    assert "REPLAYED SNAPSHOT" in done.stdout
    assert "4.81 TB/s" in done.stdout and "140.4 GiB total" in done.stdout
    if "no (CPU-only build)" in done.stdout:
        assert 'CMAKE_ARGS="-DGGML_CUDA=on" pip install' in done.stdout
