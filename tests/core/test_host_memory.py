"""Host RAM as llama.cpp uses it: which weights it copies, mapped pages, load modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtapp.core.fit.devices import GIB, MIB, Device
from qtapp.core.fit.host_memory import HostLoad, HostRepack
from qtapp.core.fit.kv_model import ContextSettings
from qtapp.core.fit.plan import PlanInputs, estimate_weights, plan_row
from qtapp.core.gguf.model import read_model
from qtapp.testing.archs import write_tiny_qwen3moe

pytestmark = pytest.mark.timeout(120)

AVX2 = HostRepack.from_system_info(
    "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | OPENMP = 1 | REPACK = 1 | "
)
AVX512 = HostRepack(AVX2.features | {"AVX512"})
AMX = HostRepack(AVX512.features | {"AMX_INT8", "AVX512_VNNI"})
NO_REPACK = HostRepack.from_system_info("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | ")
HOST = Device("CPU", 64 * GIB, 64 * GIB, 40e9, False)


def _q4k_bytes(k: int, n: int, e: int = 1) -> int:
    return e * n * (k // 256) * 144


def test_system_info_is_read_as_the_build_prints_it() -> None:
    assert {"AVX2", "REPACK", "F16C"} <= AVX2.features
    assert AVX2.kinds == ("CPU_REPACK",)
    assert AMX.kinds == ("AMX", "CPU_REPACK")
    assert NO_REPACK.kinds == ()
    assert "no weight repacking" in NO_REPACK.describe()


def test_repack_rules_follow_the_pinned_ggml() -> None:
    # AVX2: Q4_K with rows divisible by 8 is copied at its own size; other rows, Q6_K not
    assert AVX2.copy_of("blk.0.attn_q.weight", "Q4_K", (4096, 4096)) == (
        "CPU_REPACK",
        _q4k_bytes(4096, 4096),
    )
    assert AVX2.copy_of("blk.0.attn_q.weight", "Q4_K", (4096, 4100)) == ("", 0)
    assert AVX2.copy_of("blk.0.ffn_down.weight", "Q6_K", (4096, 4096)) == ("", 0)
    assert AVX2.copy_of("blk.0.ffn_down.weight", "Q8_0", (4096, 4096)) == ("", 0)
    # Q2_K only with AVX512
    assert AVX2.copy_of("blk.0.ffn_up.weight", "Q2_K", (4096, 4096)) == ("", 0)
    assert AVX512.copy_of("blk.0.ffn_up.weight", "Q2_K", (4096, 4096))[0] == "CPU_REPACK"
    # token_embd is read row by row: never copied; norms and biases neither
    assert AVX2.copy_of("token_embd.weight", "Q4_0", (4096, 32000)) == ("", 0)
    assert AVX2.copy_of("blk.0.attn_norm.weight", "F32", (4096,)) == ("", 0)
    # MoE experts (3-D, MUL_MAT_ID) are copied by CPU_REPACK
    assert AVX2.copy_of("blk.0.ffn_up_exps.weight", "Q4_K", (2048, 768, 128)) == (
        "CPU_REPACK",
        _q4k_bytes(2048, 768, 128),
    )
    # without REPACK in the build nothing is copied
    assert NO_REPACK.copy_of("blk.0.attn_q.weight", "Q4_K", (4096, 4096)) == ("", 0)


def test_amx_takes_its_types_first_with_its_own_packing() -> None:
    kind, size = AMX.copy_of("blk.0.attn_q.weight", "Q4_K", (4096, 4096))
    assert kind == "AMX"
    assert size == 4096 * (16 * 144 + 16 * 4)  # per row: 16 blocks plus 4 bytes each
    assert AMX.copy_of("blk.0.ffn_down.weight", "Q6_K", (4096, 4096)) == (
        "AMX",
        4096 * 16 * 210,
    )
    q8 = AMX.copy_of("blk.0.attn_v.weight", "Q8_0", (4096, 1024))
    assert q8 == ("AMX", 1024 * (128 * 34 + 128 * 4))  # the s8s8 compensation
    # not a multiple of 32 rows: CPU_REPACK takes it (Q4_K, rows % 8 == 0)
    assert AMX.copy_of("blk.0.attn_k.weight", "Q4_K", (4096, 1000))[0] == "CPU_REPACK"
    # experts are MUL_MAT_ID: never AMX
    assert AMX.copy_of("blk.0.ffn_up_exps.weight", "Q4_K", (2048, 768, 8))[0] == "CPU_REPACK"


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_qwen3moe(tmp_path_factory.mktemp("moe") / "moe.gguf")


def _cpu(moe: Path, load: HostLoad, gpus: list[Device] | None = None, ngl: int | None = None):
    m = read_model(moe)
    inp = PlanInputs(m, ContextSettings(n_ctx=1024), gpus or [], HOST, load=load, ngl=ngl)
    row = plan_row(inp, estimate_weights(m, "Q4_0"))
    return row, next(u for u in row.devices if u.device == "CPU")


def test_cpu_plan_counts_the_copies_and_the_pages_read_once(moe: Path) -> None:
    plain_row, plain = _cpu(moe, HostLoad("mmap", NO_REPACK))
    row, cpu = _cpu(moe, HostLoad("mmap", AVX2))
    m = read_model(moe)
    w = estimate_weights(m, "Q4_0")
    copied = sum(
        w.tensors[t.name]
        for t in m.tensors
        if t.name not in ("token_embd.weight", "output.weight")  # rows; Q6_K head
        and len(t.shape) >= 2 and "norm" not in t.name and "gate_inp" not in t.name
    )  # fmt: skip
    assert copied > 0
    # the copies have the file's size: the in-use weights stay the same, the originals were
    # read once through the mapping and stay in the page cache
    assert cpu.weights_bytes == plain.weights_bytes
    assert cpu.load_cache_bytes == copied
    assert cpu.mapped_bytes == plain.weights_bytes - copied
    assert cpu.copies_bytes == copied and plain.copies_bytes == 0
    assert cpu.peak_bytes == cpu.total_bytes + copied
    assert plain.load_cache_bytes == 0 and plain.mapped_bytes == plain.weights_bytes
    assert row.verdict == plain_row.verdict


def test_load_modes(moe: Path) -> None:
    _, mapped = _cpu(moe, HostLoad("mmap", AVX2))
    _, none = _cpu(moe, HostLoad("none", AVX2))
    _, locked = _cpu(moe, HostLoad("mmap+mlock", AVX2))
    # --load-mode none: the weights are read into memory, nothing is mapped or read twice
    assert none.mapped_bytes == 0 and none.load_cache_bytes == 0
    m = read_model(moe)
    assert none.weights_bytes == mapped.weights_bytes
    assert mapped.overhead_bytes - none.overhead_bytes == m.meta_bytes  # the mapped header
    # mmap+mlock pins the pages read once too
    assert locked.load_cache_bytes == 0
    assert locked.total_bytes == mapped.total_bytes + mapped.load_cache_bytes
    with pytest.raises(ValueError, match="load mode"):
        HostLoad("fast")
    assert HostLoad("none").flag() == "--load-mode none" and HostLoad().flag() == ""


def test_amx_copies_are_larger_and_can_turn_a_fit_into_no(moe: Path) -> None:
    _, avx = _cpu(moe, HostLoad("mmap", AVX2))
    m = read_model(moe)
    w = estimate_weights(m, "Q4_K_M")
    inp = PlanInputs(m, ContextSettings(n_ctx=1024), [], HOST, load=HostLoad("mmap", AMX))
    cpu = plan_row(inp, w).devices[-1]
    inp_plain = PlanInputs(m, ContextSettings(n_ctx=1024), [], HOST, load=HostLoad("mmap", AVX2))
    plain = plan_row(inp_plain, w).devices[-1]
    assert cpu.weights_bytes > plain.weights_bytes  # AMX packs extra scales per block
    # a host with just the plain total available: "fits" without AMX, "no" with it
    tight = Device("CPU", plain.total_bytes, plain.total_bytes, 40e9, False)
    assert plan_row(PlanInputs(m, inp.settings, [], tight, load=inp_plain.load), w).verdict != "no"
    assert plan_row(PlanInputs(m, inp.settings, [], tight, load=inp.load), w).verdict == "no"
    assert avx.total_bytes > 0


def test_partial_offload_reads_the_gpu_layers_once_through_the_mapping(moe: Path) -> None:
    gpu = Device("CUDA0", 8 * GIB, 8 * GIB, 1e12, True)
    row, cpu = _cpu(moe, HostLoad("mmap", AVX2), [gpu], ngl=2)
    on_gpu = row.devices[0].weights_bytes
    assert on_gpu > 0
    assert cpu.load_cache_bytes >= on_gpu - 1 * MIB  # the uploaded layers' file pages
    _, none = _cpu(moe, HostLoad("none", AVX2), [gpu], ngl=2)
    assert none.load_cache_bytes == 0


def test_tied_output_on_the_cpu_is_copied_from_token_embd_which_stays_mapped(
    tmp_path: Path,
) -> None:
    """Tied embeddings: token_embd is read row by row (mapped), and llama.cpp's output layer
    makes a repacked copy of it when its type repacks; nothing of it is read only once."""
    from qtapp.core.fit.weights import Weights
    from qtapp.testing.archs import write_tiny_gemma3

    m = read_model(write_tiny_gemma3(tmp_path / "gemma.gguf"))
    assert m.tied_embeddings
    embd = next(t for t in m.tensors if t.name == "token_embd.weight")
    q4 = embd.n_elements // 32 * 18
    w = Weights(
        "test",
        {t.name: (q4 if t is embd else t.bytes) for t in m.tensors},
        exact=True,
        types={t.name: ("Q4_0" if t is embd else t.type) for t in m.tensors},
    )
    inp = PlanInputs(m, ContextSettings(n_ctx=1024), [], HOST, load=HostLoad("mmap", AVX2))
    cpu = plan_row(inp, w).devices[-1]
    assert cpu.copies_bytes == q4  # the output layer's repacked copy
    assert cpu.load_cache_bytes == 0  # its source pages stay in use
    assert cpu.mapped_bytes == w.total  # every tensor's pages, token_embd once
    assert cpu.weights_bytes == w.total + q4
