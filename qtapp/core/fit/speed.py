"""Predicted generation and prompt speed (labelled "predicted" until a measurement replaces it).

Generation is memory-bound: each token reads every active weight once, plus a fixed cost per
layer (kernel launches, synchronisation) that dominates small models:
``tg = 1 / (sum_d bytes read on d / (bandwidth_d x efficiency) + GPU layers x 35 us)``.
The constants are fitted to FACTS.md's H200 llama-bench runs (bandwidth 4.81 TB/s from NVML):
1B F16 784 t/s and 3B F16 348 t/s give 72% of peak for F16 weights and 35 us per layer; with
that, 1B Q4_K_M 891 t/s and 3B Q4_K_M 440 t/s give 30-33% for k-quants (dequantizing in the
matmul costs more than the bytes saved at batch size 1). The headline "3B F16 at 47% of NVML's
bandwidth" is the same data with the per-layer cost folded in. Host memory reaches about 60% of
its peak in llama.cpp's CPU matmuls. Mixture-of-experts models read only the routed experts a
token uses (``n_expert_used / n_expert`` of the expert tensors) plus all shared weights.

Prompt processing is compute-bound: 2 FLOPs per active parameter per token. The H200 measured
1B F16 pp512 = 59.6k tokens/s, i.e. about 148 TFLOP/s effective; other GPUs are scaled by their
bandwidth relative to the H200 (a coarse proxy for their generation). Layers on the CPU during
prompt processing are computed on the GPU with their weights streamed over PCIe (llama.cpp's
op offload), about 25 GB/s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qtapp.core.fit.devices import Device
    from qtapp.core.fit.kv_model import ContextSettings
    from qtapp.core.gguf.model import ModelInfo

GPU_EFFICIENCY_FLOAT = 0.72
GPU_EFFICIENCY_QUANT = 0.32
GPU_SECONDS_PER_LAYER = 35e-6
CPU_EFFICIENCY = 0.60
H200_BANDWIDTH = 4.81e12
H200_PP_FLOPS = 148e12
CPU_FLOPS = 2e11  # a desktop CPU's effective llama.cpp matmul throughput
PCIE_BYTES_PER_S = 25e9


def predict_speed(
    m: ModelInfo,
    uses: list[Any],
    gpus: list[Device],
    host: Device,
    cs: ContextSettings,
    float_weights: bool = False,
    gpu_layers: int = 0,
) -> tuple[float, float]:
    """(tg, pp) tokens/s for a placement (``uses``: DeviceUse per GPU, then the CPU)."""
    eff = GPU_EFFICIENCY_FLOAT if float_weights else GPU_EFFICIENCY_QUANT
    seconds = gpu_layers * GPU_SECONDS_PER_LAYER if gpus else 0.0
    cpu_bytes = 0.0
    for u, dev in zip(uses, [*gpus, host], strict=False):
        if u.device == "CPU":
            cpu_bytes = u.read_bytes
            seconds += u.read_bytes / (dev.bandwidth * CPU_EFFICIENCY)
        else:
            seconds += u.read_bytes / (max(dev.bandwidth, 1.0) * eff)
    frac = (m.n_expert_used / m.n_expert) if m.is_moe and m.n_expert_used else 1.0
    tg = 1.0 / seconds if seconds > 0 else 0.0
    flops = 2.0 * m.n_params_active
    if gpus:
        bw = sum(g.bandwidth for g in gpus) / len(gpus)
        gpu_flops = H200_PP_FLOPS * bw / H200_BANDWIDTH
        if not float_weights:  # FACTS.md: Q4_K_M pp512 is 54% (1B) and 48% (3B) of F16's
            gpu_flops *= 0.5
        ub = max(cs.n_ubatch, 1)
        per_ubatch = ub * flops / gpu_flops + cpu_bytes / frac / PCIE_BYTES_PER_S
        pp = ub / per_ubatch
    else:
        pp = CPU_FLOPS / flops
    return tg, pp
