"""``quantlens hw [--json]``: the hardware report, for people and for scripts."""

from __future__ import annotations

import argparse

from qtapp.core.hardware import format as fmt
from qtapp.core.hardware.llama_build import CUDA_INSTALL_COMMAND, get_llama_build
from qtapp.core.hardware.probe import HardwareReport, probe_hardware


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "hw",
        help="show the GPUs, the host and the llama.cpp build",
        description="Show every NVIDIA GPU NVML sees, the host's CPU and RAM, and whether the "
        "installed llama.cpp build can offload to a GPU. QUANTLENS_NVML_REPLAY=<snapshot.json> "
        "replays a recorded GPU instead of asking NVML.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--no-llama",
        action="store_true",
        help="skip the llama.cpp build check (it starts a worker process once, then is cached)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    llama = None if args.no_llama else get_llama_build()
    report = probe_hardware(llama=llama)
    if args.json:
        print(report.to_json())
    else:
        print(render(report))
    return 0  # "status" says what was found; the command itself worked


def _row(label: str, value: str) -> str:
    return f"  {label:<12}{value}"


def render(report: HardwareReport) -> str:
    """The human-readable table."""
    lines = []
    head = f"Hardware: {fmt.status_title(report)}"
    if report.driver_version:
        head += (
            f"  (driver {report.driver_version}, CUDA driver {report.cuda_driver_version or '?'})"
        )
    lines.append(head)
    if report.is_replay:
        lines.append(f"  REPLAYED SNAPSHOT, not this machine: {report.source_detail}")
    if report.reason:
        lines.append(f"  {report.reason}")
    for gpu in report.gpus:
        lines.append("")
        lines.append(f"GPU {gpu.index}  {gpu.name or fmt.UNKNOWN}  {gpu.pci_bus_id or ''}")
        lines.append(_row("UUID", gpu.uuid or fmt.UNKNOWN))
        lines.append(
            _row(
                "VRAM",
                f"{fmt.gib(gpu.total_bytes)} total, {fmt.gib(gpu.free_bytes)} free, "
                f"{fmt.gib(gpu.used_bytes)} used ({fmt.gib(gpu.used_by_others_bytes)} "
                "by other processes)",
            )
        )
        lines.append(
            _row(
                "Bandwidth",
                f"{fmt.tbps(gpu.bandwidth_bytes_per_s)} ({fmt.bandwidth_detail(gpu)})",
            )
        )
        lines.append(_row("Compute", f"capability {gpu.compute_capability_text or fmt.UNKNOWN}"))
        lines.append(
            _row(
                "Now",
                f"{fmt.celsius(gpu.temperature_c)}, GPU {fmt.percent(gpu.utilization_gpu_pct)}, "
                f"memory {fmt.percent(gpu.utilization_mem_pct)}, {fmt.power_text(gpu)}",
            )
        )
        for name, why in gpu.unknown.items():
            lines.append(_row("", f"{name} unknown: {why}"))
    for gpu in report.lost_gpus:
        lines.append("")
        lines.append(f"GPU {gpu.index}  {gpu.name or fmt.UNKNOWN}  LOST")
    host = report.host
    lines.append("")
    lines.append("Host")
    if host is not None:
        lines.append(_row("CPU", host.cpu_model or fmt.UNKNOWN))
        lines.append(_row("Cores", fmt.cores_text(host)))
        lines.append(
            _row(
                "RAM",
                f"{fmt.gib(host.ram_total_bytes)} total, "
                f"{fmt.gib(host.ram_available_bytes)} available",
            )
        )
        lines.append(_row("OS", host.os_name or fmt.UNKNOWN))
    build = report.llama
    lines.append("")
    lines.append("llama.cpp (llama-cpp-python)")
    if build is None:
        lines.append(_row("", "not checked (--no-llama)"))
    else:
        lines.append(_row("Version", build.version or fmt.UNKNOWN))
        lines.append(_row("GPU offload", fmt.offload_text(build)))
        if build.devices:
            lines.append(
                _row("Devices", ", ".join(f"{d.name} ({d.description})" for d in build.devices))
            )
        if build.error:
            lines.append(_row("Problem", build.error))
        if report.needs_cuda_build:
            lines.append("")
            lines.append("  GPUs are present but this llama.cpp build cannot offload to them.")
            lines.append("  Install a CUDA build (it compiles llama.cpp, several minutes):")
            lines.append(f"    {CUDA_INSTALL_COMMAND}")
    return "\n".join(lines)
