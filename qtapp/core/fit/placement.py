"""Where llama.cpp puts each layer, and what each device then holds.

Placement follows llama.cpp's ``llama_model::load_tensors``: with ``n_gpu_layers`` = ngl, the last
ngl of the ``n_layer + 1`` entries (blocks, then the output layer) go to the GPUs, split in
proportion to ``tensor_split`` or, by default, to each GPU's free memory (``upper_bound`` over the
cumulative fractions); token embeddings stay on the CPU (the input layer). KV and recurrent state
live with their layer. When the default does not fit, :func:`fill_gpus` and :func:`moe_upgrade`
do what ``common/fit.cpp`` (``--fit``) does: contiguous slices filled back to front, then routed
experts moved to the CPU where VRAM runs out.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from qtapp.core.fit.devices import Device
from qtapp.core.fit.host_memory import HostLoad, HostRepack, bookkeeping_bytes, may_copy
from qtapp.core.fit.kv_model import (
    ContextSettings,
    compute_parts,
    host_compute_estimate,
    output_buffer,
)
from qtapp.core.fit.weights import FLOAT_TYPES, Weights, tensor_type
from qtapp.core.gguf.model import ModelInfo


@dataclass
class ExactFigures:
    """llama.cpp's own figures for one context configuration (a dry load of the model)."""

    kv_bytes: int
    recurrent_bytes: int
    compute_bytes: int  # CPU-only graph, as the dry load logs it
    output_bytes: int


@dataclass
class DeviceUse:
    device: str
    weights_bytes: int = 0
    kv_bytes: int = 0
    compute_bytes: int = 0
    overhead_bytes: int = 0
    budget_bytes: int = 0  # what may be used (free minus margin); 0 = unknown
    free_bytes: int = 0
    read_bytes: float = 0.0  # weights read per generated token (routed experts: the used share)
    #: host only: the part of weights_bytes that is mapped file pages, used for every token
    #: (page cache the system could drop, but only by re-reading it from disk)
    mapped_bytes: int = 0
    #: host only: file pages read once while loading (originals of repacked weights, weights
    #: uploaded to GPUs): resident after the load until the system reclaims them; not in total
    load_cache_bytes: int = 0
    #: host only: the part of weights_bytes in llama.cpp's extra buffers (CPU_REPACK, AMX)
    copies_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.compute_bytes + self.overhead_bytes

    @property
    def peak_bytes(self) -> int:
        """The resident memory right after the load (the total plus the pages read once)."""
        return self.total_bytes + self.load_cache_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "weights_bytes": self.weights_bytes,
            "kv_bytes": self.kv_bytes,
            "compute_bytes": self.compute_bytes,
            "overhead_bytes": self.overhead_bytes,
            "total_bytes": self.total_bytes,
            **(
                {
                    "copies_bytes": self.copies_bytes,
                    "mapped_bytes": self.mapped_bytes,
                    "load_cache_bytes": self.load_cache_bytes,
                    "peak_bytes": self.peak_bytes,
                }
                if self.device == "CPU"
                else {}
            ),
            "budget_bytes": self.budget_bytes,
            "free_bytes": self.free_bytes,
        }


def layer_devices(
    n_layer_all: int, ngl: int, gpus: list[Device], tensor_split: list[float] | None = None
) -> list[int]:
    """Device index per layer 0..n_layer_all (the last one is the output layer); -1 = CPU."""
    if not gpus or ngl <= 0:
        return [-1] * (n_layer_all + 1)
    split = list(tensor_split or [])
    if not split or all(x == 0 for x in split):
        split = [float(max(g.free_bytes, 1)) for g in gpus]
    split = (split + [0.0] * len(gpus))[: len(gpus)]
    acc: list[float] = []
    s = 0.0
    for x in split:
        s += x
        acc.append(s)
    acc = [a / s for a in acc]
    start = max(n_layer_all + 1 - ngl, 0)
    act = min(ngl, n_layer_all + 1)
    out = []
    for il in range(n_layer_all + 1):
        if il < start or il - start >= act:
            out.append(-1)
        else:
            out.append(min(bisect.bisect_right(acc, (il - start) / act), len(gpus) - 1))
    return out


@dataclass
class Layered:
    """A target's bytes grouped for placement: per block (dense part, routed experts)."""

    layer: list[int]
    experts: list[int]
    embd: int
    output: int  # output.weight + output_norm (a copy of token_embd when tied)
    other: int  # tensors of no block besides those (rare)
    has_float_matrices: bool
    tied_copy: int = 0  # the output layer's copy of token_embd (tied embeddings)
    #: held on the CPU, llama.cpp copies some of these weights into an extra buffer
    #: (:mod:`qtapp.core.fit.host_memory`): the file bytes of those tensors and the copies' bytes
    copied: Copied | None = None


@dataclass
class Copied:
    """Per block (dense part, routed experts) and for the output layer: the file bytes of the
    weights llama.cpp would copy into an extra CPU buffer, and the bytes of the copies."""

    layer_file: list[int]
    layer_copy: list[int]
    experts_file: list[int]
    experts_copy: list[int]
    output_file: int = 0
    output_copy: int = 0


def group_weights(
    m: ModelInfo, w: Weights, n_layer_all: int, repack: HostRepack | None = None
) -> Layered:
    """Memoized per (model, weights object): sliders replan without re-walking the tensors."""
    repack = repack or HostRepack()
    key = ("group", id(w), n_layer_all, repack)
    hit: tuple[Weights, Layered] | None = m.memo.get(key)
    if hit is not None and hit[0] is w:
        return hit[1]
    g = group_weights_uncached(m, w, n_layer_all)
    if repack.kinds:
        g.copied = _copied(m, w, n_layer_all, repack)
    m.memo[key] = (w, g)
    return g


def _copied(m: ModelInfo, w: Weights, n_layer_all: int, repack: HostRepack) -> Copied:
    c = Copied([0] * n_layer_all, [0] * n_layer_all, [0] * n_layer_all, [0] * n_layer_all)
    size = w.tensors.get
    for t, name, expert in _copy_candidates(m, n_layer_all):
        _, copy = repack.copy_of(name, tensor_type(m, w, t.name, t.type, t.shape), t.shape)
        if not copy:
            continue
        b = size(t.name, t.bytes)
        if expert is None:  # the output layer
            c.output_file += b
            c.output_copy += copy
        elif expert:
            c.experts_file[t.layer] += b
            c.experts_copy[t.layer] += copy
        else:
            c.layer_file[t.layer] += b
            c.layer_copy[t.layer] += copy
    return c


def _copy_candidates(m: ModelInfo, n_layer_all: int) -> list[tuple[Any, str, bool | None]]:
    """The tensors llama.cpp may copy (a block's or the output's weight matrices, by their
    name and shape: see HostRepack.copy_of), listed once per model: (tensor, its name as the
    loader sees it, expert or not; None for the output layer). A plan sizes the copies of some
    40 targets; walking every tensor for each took 20-30 ms of the window's replan."""
    key = ("copy-candidates", n_layer_all)
    table: list[tuple[Any, str, bool | None]] | None = m.memo.get(key)
    if table is None:
        table = []
        tied = m.tied_embeddings
        for t in m.tensors:
            name = "output.weight" if tied and t.name == "token_embd.weight" else t.name
            if not may_copy(name, t.shape):
                continue
            if t.layer is not None and t.layer < n_layer_all:
                table.append((t, name, t.is_expert))
            elif name.startswith("output"):
                table.append((t, name, None))
        m.memo[key] = table
    return table


def _tensor_slots(
    m: ModelInfo, n_layer_all: int
) -> tuple[list[tuple[str, int, int]], list[tuple[str, str]]]:
    """Per tensor (name, file bytes, slot), once per model: slots 0..n-1 are the blocks, n..2n-1
    their experts, then token_embd, output and the rest; and the large matrices (name, file
    type) that may be floats. A plan groups some 40 targets' weights by these."""
    key = ("slots", n_layer_all)
    hit: tuple[list[tuple[str, int, int]], list[tuple[str, str]]] | None = m.memo.get(key)
    if hit is not None:
        return hit
    n = n_layer_all
    table: list[tuple[str, int, int]] = []
    matrices: list[tuple[str, str]] = []
    for t in m.tensors:
        if len(t.shape) >= 2 and t.n_elements >= 1 << 20:
            matrices.append((t.name, t.type))
        if t.layer is not None and t.layer < n:
            slot = t.layer + (n if t.is_expert else 0)
        elif t.name == "token_embd.weight":
            slot = 2 * n
        elif t.name.startswith("output"):
            slot = 2 * n + 1
        else:
            slot = 2 * n + 2
        table.append((t.name, t.bytes, slot))
    m.memo[key] = (table, matrices)
    return table, matrices


def group_weights_uncached(m: ModelInfo, w: Weights, n_layer_all: int) -> Layered:
    table, matrices = _tensor_slots(m, n_layer_all)
    n = n_layer_all
    sums = [0] * (2 * n + 3)
    size = w.tensors.get
    for name, file_bytes, slot in table:
        sums[slot] += size(name, file_bytes)
    floats = False
    if w.exact or w.target in ("F16", "BF16", "F32", "current"):
        types = w.types if w.exact else {}
        floats = any((types.get(name) or ftype) in FLOAT_TYPES for name, ftype in matrices)
    embd, output, other = sums[2 * n], sums[2 * n + 1], sums[2 * n + 2]
    tied = m.tied_embeddings
    if tied:
        output += embd
    return Layered(sums[:n], sums[n : 2 * n], embd, output, other, floats, embd if tied else 0)


@dataclass
class Placement:
    """Device per block and for the output layer (-1 = CPU); which blocks keep experts on CPU."""

    where: list[int]  # len n_layer_all + 1; the last entry is the output layer
    experts_cpu: list[bool]
    tensor_split: list[float] | None = None

    @property
    def n_gpu_layers(self) -> int:
        return sum(1 for d in self.where if d >= 0)

    @property
    def n_cpu_moe(self) -> int:
        return sum(self.experts_cpu)


def llama_args(pl: Placement, has_gpus: bool, n_gpus: int) -> str:
    """llama.cpp command-line flags for a placement: -ngl, -ts, --n-cpu-moe or -ot overrides."""
    if not has_gpus:
        return "-ngl 0"
    args = [f"-ngl {pl.n_gpu_layers}"]
    if n_gpus > 1 and pl.tensor_split and any(pl.tensor_split):
        args.append("-ts " + ",".join(f"{x:g}" for x in pl.tensor_split))
    on_cpu = [i for i, c in enumerate(pl.experts_cpu) if c and pl.where[i] >= 0]
    if on_cpu:
        if on_cpu == list(range(len(on_cpu))):
            args.append(f"--n-cpu-moe {len(on_cpu)}")
        else:
            blocks = "|".join(str(i) for i in on_cpu)
            args.append(f'-ot "blk\\.({blocks})\\.ffn_.*_exps\\.=CPU"')
    return " ".join(args)


def compute_split(m: ModelInfo, cs: ContextSettings, exact: ExactFigures | None) -> tuple[int, int]:
    out_phase, graph = compute_parts(m, cs)
    if exact is not None:  # llama.cpp's CPU figure calibrates the estimate of the full graph
        scale = exact.compute_bytes / max(max(out_phase, graph), 1)
        out_phase, graph = int(out_phase * scale), int(graph * scale)
    return out_phase, graph


def device_uses(
    m: ModelInfo,
    g: Layered,
    kv_layer: list[int],
    cs: ContextSettings,
    gpus: list[Device],
    host: Device,
    pl: Placement,
    margin: int,
    exact: ExactFigures | None,
    load: HostLoad | None = None,
) -> list[DeviceUse]:
    n_all = len(g.layer)
    where = pl.where
    uses = [DeviceUse(d.name, budget_bytes=d.budget(margin), free_bytes=d.free_bytes) for d in gpus]
    cpu = DeviceUse("CPU", budget_bytes=host.free_bytes, free_bytes=host.free_bytes)

    def slot(idx: int) -> DeviceUse:
        return cpu if idx < 0 else uses[idx]

    frac = m.n_expert_used / m.n_expert if m.is_moe and m.n_expert_used else 1.0
    cpu.weights_bytes += g.embd + g.other
    for il in range(n_all):
        dev = slot(where[il])
        dev.weights_bytes += g.layer[il]
        dev.read_bytes += g.layer[il]
        exp_dev = cpu if pl.experts_cpu[il] else dev
        exp_dev.weights_bytes += g.experts[il]
        exp_dev.read_bytes += g.experts[il] * frac
        if il < len(kv_layer):
            dev.kv_bytes += kv_layer[il]
    out_dev = where[n_all]
    slot(out_dev).weights_bytes += g.output
    slot(out_dev).read_bytes += g.output
    if out_dev < 0 and g.tied_copy:
        cpu.weights_bytes -= g.tied_copy  # tied and both on the CPU: one copy
    out_phase, graph = compute_split(m, cs, exact)
    used_gpus = {i for i in where if i >= 0}
    for i in used_gpus:
        uses[i].compute_bytes = max(out_phase, graph) if i == out_dev else graph
    if out_dev < 0:
        cpu.compute_bytes = max(out_phase, graph)
    elif any(i < 0 for i in where[:n_all]) or any(pl.experts_cpu):
        cpu.compute_bytes = graph
    else:
        cpu.compute_bytes = min(host_compute_estimate(m, cs), max(out_phase, graph))
    cpu.compute_bytes += exact.output_bytes if exact else output_buffer(m, cs)
    if used_gpus:
        for u, gpu in zip(uses, gpus, strict=True):
            u.overhead_bytes = gpu.cuda_overhead(g.has_float_matrices)
    load = load or HostLoad()
    _host_pages(cpu, uses, g, pl, load)
    cpu.overhead_bytes = bookkeeping_bytes(m.n_vocab, m.meta_bytes, load)
    return [*uses, cpu]


def _host_pages(
    cpu: DeviceUse, gpus: list[DeviceUse], g: Layered, pl: Placement, load: HostLoad
) -> None:
    """Split the host's weights into repacked copies and mapped pages, and count the pages the
    load reads once (see :mod:`qtapp.core.fit.host_memory`)."""
    c = g.copied
    copied_file = copies = 0  # file bytes of the copied weights, bytes of the copies
    if c is not None:
        n_all = len(g.layer)
        for il in range(n_all):
            if pl.where[il] < 0:
                copied_file += c.layer_file[il]
                copies += c.layer_copy[il]
            if pl.where[il] < 0 or pl.experts_cpu[il]:
                copied_file += c.experts_file[il]
                copies += c.experts_copy[il]
        if pl.where[n_all] < 0:
            copies += c.output_copy
            if not g.tied_copy:  # a tied output is copied from token_embd, which stays mapped
                copied_file += c.output_file
    in_use = cpu.weights_bytes - copied_file  # the file's pages still used for every token
    cpu.weights_bytes = in_use + copies
    cpu.copies_bytes = copies
    if not load.mapped:
        return
    uploaded = sum(u.weights_bytes for u in gpus) - (g.tied_copy if pl.where[-1] >= 0 else 0)
    cpu.mapped_bytes = in_use
    once = copied_file + max(uploaded, 0)
    if load.locked:  # mlock pins the mapped range, pages read once included (at most)
        cpu.weights_bytes += once
    else:
        cpu.load_cache_bytes = once


def gpus_fit(uses: list[DeviceUse]) -> bool:
    return all(u.total_bytes <= u.budget_bytes for u in uses if u.device != "CPU")


def verdict_of(uses: list[DeviceUse], all_on_gpu: bool) -> str:
    cpu = next(u for u in uses if u.device == "CPU")
    cpu_ok = cpu.budget_bytes <= 0 or cpu.total_bytes <= cpu.budget_bytes
    if not gpus_fit(uses) or not cpu_ok:
        return "no"
    return "fits" if all_on_gpu else "partial"


def fill_gpus(
    m: ModelInfo,
    g: Layered,
    kv_layer: list[int],
    cs: ContextSettings,
    gpus: list[Device],
    margin: int,
    exact: ExactFigures | None,
    with_experts: bool,
) -> Placement:
    """--fit's step 3: fill the GPUs back to front with contiguous slices of layers (the last
    GPU takes the output layer); blocks that do not fit stay on the CPU. With
    ``with_experts=False`` every block's routed experts stay on the CPU."""
    n_all = len(g.layer)
    out_phase, graph = compute_split(m, cs, exact)
    where = [-1] * (n_all + 1)
    il = n_all  # next item to place, from the back (n_all = the output layer)
    for gi in range(len(gpus) - 1, -1, -1):
        room = gpus[gi].budget(margin) - gpus[gi].cuda_overhead(g.has_float_matrices) - graph
        while il >= 0:
            if il == n_all:
                need = g.output + max(out_phase - graph, 0)
            else:
                need = (
                    g.layer[il]
                    + (g.experts[il] if with_experts else 0)
                    + (kv_layer[il] if il < len(kv_layer) else 0)
                )
            if need > room:
                break
            room -= need
            where[il] = gi
            il -= 1
        if where[n_all] < 0:
            break  # the output layer must sit on the last GPU (it cannot be split)
    # llama.cpp offloads the last ngl layers: keep only the contiguous tail
    first_cpu = max((i for i in range(n_all + 1) if where[i] < 0), default=-1)
    for i in range(first_cpu + 1):
        where[i] = -1
    counts = [float(sum(1 for d in where if d == gi)) for gi in range(len(gpus))]
    return Placement(
        where,
        [not with_experts or where[i] < 0 for i in range(n_all)] if m.is_moe else [False] * n_all,
        counts,
    )


def moe_upgrade(g: Layered, pl: Placement, uses: list[DeviceUse]) -> Placement:
    """--fit's step 4: with all dense parts on the GPUs, give each GPU the experts of as many of
    its own blocks as still fit, front to back. ``uses``: :func:`device_uses` of ``pl``."""
    experts_cpu = list(pl.experts_cpu)
    room = [u.budget_bytes - u.total_bytes for u in uses[:-1]]
    for il in range(len(g.layer)):
        d = pl.where[il]
        if d >= 0 and experts_cpu[il] and g.experts[il] <= room[d]:
            room[d] -= g.experts[il]
            experts_cpu[il] = False
    return Placement(pl.where, experts_cpu, pl.tensor_split)
