"""Host RAM: the plan's CPU figures against llama.cpp's real loads on this machine.

    python3 bench/host_memory.py [--ctx 4096] [--types Q4_0,Q4_K_M,Q8_0,Q2_K,IQ4_NL]

Gemma 3 270M: the PyPI Q4_K_M file as it is, and an F16 base made from it then quantized to
each type (``quantize`` jobs). Each file is really loaded on the CPU (``real_load`` job: a worker
child, llama.cpp's defaults, extra buffer types on) with ``--load-mode mmap`` and ``none``. For
each load:

* llama.cpp's logged model buffers: the repacked copies (``CPU_REPACK`` / ``AMX``) and the mapped
  (``CPU_Mapped``) or read-in (``CPU``) weights, against the plan's copies and its mapped pages
  plus the pages read once (the plan is made from the build's system info, as the app makes it);
* the process's peak resident memory once the weights are in (``VmHWM`` after the model load,
  minus the resident memory before it), against the plan's weights, the pages read once and
  llama.cpp's own tables (``VOCAB_BYTES_PER_TOKEN`` per vocabulary token, plus the file's
  metadata pages when it is mapped).

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qtapp.core.app.demo import demo_model_path  # noqa: E402
from qtapp.core.fit.devices import GIB, MIB, Device  # noqa: E402
from qtapp.core.fit.exact import memory_params  # noqa: E402
from qtapp.core.fit.host_memory import HostLoad  # noqa: E402
from qtapp.core.fit.kv_model import ContextSettings  # noqa: E402
from qtapp.core.fit.plan import PlanInputs, current_weights, plan_row  # noqa: E402
from qtapp.core.fit.sources import build_repack  # noqa: E402
from qtapp.core.gguf.model import read_model  # noqa: E402
from qtapp.core.jobs.job import run_job  # noqa: E402

HOST = Device("CPU", 64 * GIB, 64 * GIB, 40e9, False)


def files(work: Path, types: list[str]) -> list[tuple[str, Path]]:
    demo = Path(demo_model_path())
    out = [("Q4_K_M (PyPI file)", demo)]
    base = work / "gemma-F16.gguf"
    run_job("quantize", model=str(demo), out=str(base), target="F16", allow_requantize=True)
    out.append(("F16", base))
    for t in types:
        q = work / f"gemma-{t}.gguf"
        run_job("quantize", model=str(base), out=str(q), target=t, allow_requantize=True)
        out.append((t, q))
    return out


def case(label: str, path: Path, mode: str, cs: ContextSettings) -> str:
    m = read_model(path)
    load = HostLoad(mode, build_repack())
    cpu = plan_row(PlanInputs(m, cs, [], HOST, load=load), current_weights(m)).devices[-1]
    r = run_job("real_load", **memory_params(m, cs), load_mode=mode)
    devs = r["devices"]
    copies = sum(devs.get(k, {}).get("model", 0) for k in ("CPU_REPACK", "AMX"))
    held = devs.get("CPU", {}).get("model", 0)
    p_copies = cpu.copies_bytes
    if mode == "mmap":  # llama.cpp maps the whole range of the CPU's tensors
        p_held = cpu.mapped_bytes + cpu.load_cache_bytes
    else:
        p_held = cpu.weights_bytes - p_copies
    rise = r["hwm_after_model_bytes"] - r["rss_before_bytes"]
    p_rise = cpu.weights_bytes + cpu.load_cache_bytes + cpu.overhead_bytes

    def mib(b: float) -> str:
        return f"{b / MIB:.2f}"

    return (
        f"| {label} | {mode} | {mib(p_copies)} | {mib(copies)} | {mib(p_held)} | {mib(held)} | "
        f"{mib(p_rise)} | {mib(rise)} | {mib(rise - p_rise)} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--types", default="Q4_0,Q4_K_M,Q8_0,Q2_K,IQ4_NL")
    args = parser.parse_args()
    cs = ContextSettings(n_ctx=args.ctx)
    repack = build_repack()
    print(
        f"{platform.processor() or platform.machine()}; llama.cpp build features: "
        f"{' '.join(sorted(repack.features))}; {repack.describe()}.\n"
    )
    print(
        "| file | load mode | copies planned | copies logged | mapped / read-in planned | "
        "logged | RSS planned | RSS rise after the load | difference |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="ql-host-") as tmp:
        for label, path in files(Path(tmp), [t for t in args.types.split(",") if t]):
            for mode in ("mmap", "none"):
                print(case(label, path, mode, cs), flush=True)
    print("\n(MiB.)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
