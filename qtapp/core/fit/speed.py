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

Depth (llama-bench's ``-d``: tokens already in the KV cache) costs attention. Per attention layer
``l`` a token sees ``n_l`` cached tokens: ``depth`` for a generated token, ``depth + n_ubatch/2``
on average for a prompt token (minus what it sees in an empty cache), at most the window in a
sliding-window layer (Gemma 3: 5 of every 6 layers, window 512). Per cached token every query
head does one dot product over K and one multiply-add over V: ``2 x n_head x (head_dim_k +
head_dim_v)`` FLOPs, and the K and V rows are read once (``bytes per cell``). So:

* generation, per token: ``+ sum_l bytes per cell_l x n_l`` read at the F16 weights' efficiency
  from the device holding the layer's cache, and on the CPU also ``+ sum_l 2 x n_head x (hd_k +
  hd_v) x n_l / CPU_ATTN_FLOPS`` seconds: llama.cpp's CPU flash attention goes per head, per
  cached row (F16 to F32, an online-softmax exp), far below its matmul rate;
* prompt processing: the same FLOPs per prompt token, at ``CPU_ATTN_FLOPS`` on the CPU (on a GPU
  at the weights' rate), on top of the weights' ``2 x params``.

``CPU_ATTN_FLOPS`` (a third of ``CPU_FLOPS``) is fitted to Gemma 3 270M Q4_K_M on a 2-core CPU,
llama-bench -d 1024 / 4096 against -d 0 (BENCHMARKS.md): measured tg128 -11% / -14%, pp512 -20%
/ -29%; this term gives -10% / -17% and -14% / -27% (the KV bytes alone gave -4% / -8% and
-5% / -11%).
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
CPU_ATTN_FLOPS = CPU_FLOPS / 3  # its flash attention over an F16 cache (see the docstring)
PCIE_BYTES_PER_S = 25e9


def depth_cost(m: ModelInfo, cs: ContextSettings, depth: int) -> tuple[float, float, float]:
    """Beyond what an empty cache costs, with ``depth`` tokens in the cache: (KV bytes one
    generated token reads, its attention FLOPs, attention FLOPs per prompt token). Memoized."""
    if depth <= 0:
        return 0.0, 0.0, 0.0
    key = ("depth_cost", cs.type_k, cs.type_v, cs.n_ubatch, int(depth))
    hit: tuple[float, float, float] | None = m.memo.get(key)
    if hit is not None:
        return hit
    from qtapp.core.fit.kv_model import row_bytes

    half = max(cs.n_ubatch, 1) / 2  # a prompt token attends on average to half its ubatch
    kv = tg_flops = pp_flops = 0.0
    swa = m.swa_layers
    heads = m.n_head
    for il in range(m.n_layer):
        n_kv = m.n_head_kv[il] if il < len(m.n_head_kv) else 0
        if n_kv == 0 or (il < len(m.recurrent_layers) and m.recurrent_layers[il]):
            continue
        cap = float(m.n_swa) if il < len(swa) and swa[il] and m.n_swa > 0 else float("inf")
        cell = row_bytes(cs.type_k, m.head_dim_k * n_kv) + row_bytes(cs.type_v, m.head_dim_v * n_kv)
        seen_tg = min(float(depth), cap)
        kv += cell * seen_tg
        n_head = heads[il] if il < len(heads) else n_kv
        per_cell = 2.0 * n_head * (m.head_dim_k + m.head_dim_v)
        tg_flops += per_cell * seen_tg
        pp_flops += per_cell * (min(depth + half, cap) - min(half, cap))
    if len([k for k in m.memo if isinstance(k, tuple) and k[:1] == ("depth_cost",)]) > 512:
        for k in [k for k in m.memo if isinstance(k, tuple) and k[:1] == ("depth_cost",)]:
            del m.memo[k]
    m.memo[key] = (kv, tg_flops, pp_flops)
    return kv, tg_flops, pp_flops


def predict_speed(
    m: ModelInfo,
    uses: list[Any],
    gpus: list[Device],
    host: Device,
    cs: ContextSettings,
    float_weights: bool = False,
    gpu_layers: int = 0,
    depth: int = 0,
) -> tuple[float, float]:
    """(tg, pp) tokens/s for a placement (``uses``: DeviceUse per GPU, then the CPU) with
    ``depth`` tokens already in the KV cache (0: llama-bench's default tg128 / pp512)."""
    eff = GPU_EFFICIENCY_FLOAT if float_weights else GPU_EFFICIENCY_QUANT
    seconds = gpu_layers * GPU_SECONDS_PER_LAYER if gpus else 0.0
    cpu_bytes = 0.0
    kv_read, tg_attn, attn_flops = depth_cost(m, cs, depth)
    kv_total = sum(float(getattr(u, "kv_bytes", 0) or 0) for u in uses)
    for u, dev in zip(uses, [*gpus, host], strict=False):
        share = float(getattr(u, "kv_bytes", 0) or 0) / kv_total if kv_total else 0.0
        if not kv_total and u.device == "CPU":
            share = 1.0  # no cache sized: count it where the weights are read last
        if u.device == "CPU":
            cpu_bytes = u.read_bytes
            seconds += u.read_bytes / (dev.bandwidth * CPU_EFFICIENCY)
            seconds += kv_read * share / (dev.bandwidth * CPU_EFFICIENCY)
            seconds += tg_attn * share / CPU_ATTN_FLOPS
        else:
            seconds += u.read_bytes / (max(dev.bandwidth, 1.0) * eff)
            seconds += kv_read * share / (max(dev.bandwidth, 1.0) * GPU_EFFICIENCY_FLOAT)
    frac = (m.n_expert_used / m.n_expert) if m.is_moe and m.n_expert_used else 1.0
    tg = 1.0 / seconds if seconds > 0 else 0.0
    flops = 2.0 * m.n_params_active + attn_flops
    if gpus:
        bw = sum(g.bandwidth for g in gpus) / len(gpus)
        gpu_flops = H200_PP_FLOPS * bw / H200_BANDWIDTH
        if not float_weights:  # FACTS.md: Q4_K_M pp512 is 54% (1B) and 48% (3B) of F16's
            gpu_flops *= 0.5
        ub = max(cs.n_ubatch, 1)
        per_ubatch = ub * flops / gpu_flops + cpu_bytes / frac / PCIE_BYTES_PER_S
        pp = ub / per_ubatch
    else:
        pp = 1.0 / (2.0 * m.n_params_active / CPU_FLOPS + attn_flops / CPU_ATTN_FLOPS)
    return tg, pp
