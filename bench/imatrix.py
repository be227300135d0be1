"""QuantLens importance matrices against llama.cpp's own ``llama-imatrix`` (issue #14).

Builds ``llama-imatrix`` from the vendored llama.cpp (``bench/eval.py``'s ``build_tools``), then:

1. **Same values**: the real Gemma 3 270M F16 (requantized from the PyPI Q4_K_M, as
   ``bench/eval.py`` makes it) and a tiny random-weight MoE (qwen3moe, 8 experts, top 2) through
   both tools with the same text, context and chunks: every tensor's sums and counts compared
   (largest relative difference, target <= 1e-4), and the files byte for byte.
2. **Same quants**: the F16 quantized (QuantLens' quantize job) to Q2_K, IQ3_XXS and IQ2_XS with
   llama-imatrix's file and with ours, each put at the same path in turn (the path is written
   into the quant's metadata): sha256 of the outputs compared.
3. **Speed** (the only timed step): wall time of ``llama-imatrix`` and of ``quantlens imatrix``
   (process start to exit, model load included), each under ``flock /tmp/ql-bench.lock``,
   ``--rounds`` rounds of ``--speed-chunks`` chunks taking turns, the best of each; ratio =
   theirs / ours.
4. **Quality**: KL divergence against the F16 on the evaluation text (Genesis-Exodus), with and
   without our matrix (made from Leviticus-Numbers); without only where llama.cpp allows it.

    python3 bench/imatrix.py --src /tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp \
        [--chunks 16] [--eval-chunks 20] [--speed-chunks 8] [--rounds 3] [--threads 2]
        [--only-speed] [--no-write]

``--only-speed`` reruns step 3 only (into ``bench/out/imatrix/speed.json``); steps 1, 2 and 4
come from ``result.json`` there (``--no-speed`` makes it; ``--from-files`` only writes the table).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_sections import write_section  # noqa: E402

OUT = ROOT / "bench" / "out" / "imatrix"
LOCK = "/tmp/ql-bench.lock"
MARK_START = "<!-- bench/imatrix.py:start -->"
MARK_END = "<!-- bench/imatrix.py:end -->"
CALIB = ROOT / "resources" / "texts" / "kjv-leviticus-numbers.txt"
QUANT_TYPES = ("Q2_K", "IQ3_XXS", "IQ2_XS")


def run(cmd: list[str], lock: bool = False) -> tuple[float, str]:
    """Timed runs hold the machine's bench lock; untimed ones (values only) run niced."""
    full = (["flock", LOCK] if lock else ["nice", "-n", "10"]) + cmd
    t0 = time.perf_counter()
    proc = subprocess.run(full, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return dt, proc.stdout + proc.stderr


def ref_imatrix(
    bins: Path, model: Path, out: Path, ctx: int, chunks: int, threads: int, timed: bool = False
) -> float:
    cmd = [str(bins / "llama-imatrix"), "-m", str(model), "-f", str(CALIB), "-c", str(ctx)]
    cmd += ["--chunks", str(chunks), "-t", str(threads), "--no-ppl", "-o", str(out)]
    return run(cmd, lock=timed)[0]


def our_imatrix(
    model: Path, out: Path, ctx: int, chunks: int, threads: int, timed: bool = False
) -> float:
    cmd = [str(ROOT / ".venv" / "bin" / "quantlens"), "imatrix", str(model), "--text", str(CALIB)]
    cmd += ["--ctx", str(ctx), "--chunks", str(chunks), "--threads", str(threads)]
    cmd += ["--out", str(out), "--overwrite", "--json"]
    return run(cmd, lock=timed)[0]


def tensors(path: Path) -> dict[str, np.ndarray]:
    from gguf import GGUFReader

    return {t.name: np.array(t.data, dtype=np.float64) for t in GGUFReader(path).tensors}


def compare(ours: Path, ref: Path) -> dict[str, Any]:
    a, b = tensors(ours), tensors(ref)
    worst, worst_name = 0.0, ""
    for name in sorted(set(a) & set(b)):
        if a[name].shape != b[name].shape:
            return {"same_names": True, "same_shapes": False, "worst": float("inf"), "name": name}
        rel = float(np.max(np.abs(a[name] - b[name]) / np.maximum(np.abs(b[name]), 1e-30)))
        if rel > worst:
            worst, worst_name = rel, name
    return {
        "tensors": len(b),
        "same_names": set(a) == set(b),
        "same_shapes": True,
        "worst": worst,
        "name": worst_name,
        "bytes_equal": ours.read_bytes() == ref.read_bytes(),
    }


def quantize(model: Path, target: str, out_dir: Path, imatrix: Path | None) -> Path:
    from qtapp.core.jobs.events import Finished
    from qtapp.core.quantize.jobs import QuantizeOptions, quantize_spec, run_quantize

    opts = QuantizeOptions(
        out_dir=str(out_dir), imatrix=str(imatrix) if imatrix else None, overwrite=True, nthread=2
    )
    done = run_quantize(quantize_spec(model, target, opts))
    if not isinstance(done, Finished):
        sys.exit(f"quantize {target} failed: {done}")
    return Path(done.result["path"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kld(model: Path, base: Path, chunks: int, threads: int) -> dict[str, Any]:
    cmd = [str(ROOT / ".venv" / "bin" / "quantlens"), "eval", str(model), "--base", str(base)]
    cmd += ["--chunks", str(chunks), "--threads", str(threads), "--json"]
    _dt, log = run(cmd)
    final = [json.loads(ln) for ln in log.splitlines() if ln.startswith("{") and '"final"' in ln]
    return final[-1]


def moe_model() -> Path:
    from qtapp.testing.archs import write_tiny_qwen3moe
    from qtapp.testing.filled import fill_random

    path = OUT / "tiny-qwen3moe-random.gguf"
    if not path.exists():
        fill_random(write_tiny_qwen3moe(path), seed=1)
    return path


def main() -> int:
    from eval import build_tools
    from eval import models as eval_models

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, required=True, help="vendored llama.cpp source")
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--eval-chunks", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed-chunks", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only-speed", action="store_true", help="steps 1, 2, 4 from result.json")
    ap.add_argument("--no-speed", action="store_true", help="steps 1, 2, 4 only (untimed)")
    ap.add_argument(
        "--from-files", action="store_true", help="no runs: result.json + speed.json to the table"
    )
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    bins = build_tools(args.src)
    f16 = eval_models()["F16"]
    if args.only_speed or args.from_files:
        if args.only_speed:
            (OUT / "speed.json").write_text(json.dumps(speed(bins, f16, args), indent=2))
        if not (OUT / "result.json").exists():
            print("speed.json written; result.json (steps 1, 2, 4) is not there yet")
            return 0
        res = json.loads((OUT / "result.json").read_text())
        res.update(json.loads((OUT / "speed.json").read_text()))
    else:
        res = correctness_and_quality(bins, f16, args)
        if args.no_speed:
            (OUT / "result.json").write_text(json.dumps(res, indent=2, default=str))
            return 0
        res.update(speed(bins, f16, args))
    (OUT / "result.json").write_text(json.dumps(res, indent=2, default=str))
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", section(res, args), MARK_START, MARK_END)
    return 0


def speed(bins: Path, f16: Path, args: argparse.Namespace) -> dict[str, Any]:
    t, n = args.threads, args.speed_chunks
    refs, ours = [], []
    for r in range(args.rounds):
        refs.append(ref_imatrix(bins, f16, OUT / "speed.ref.gguf", 512, n, t, timed=True))
        ours.append(our_imatrix(f16, OUT / "speed.ours.gguf", 512, n, t, timed=True))
        print(f"speed round {r + 1}: llama-imatrix {refs[-1]:.1f} s, ours {ours[-1]:.1f} s")
    return {
        "speed_chunks": n,
        "t_ref_all": refs,
        "t_ours_all": ours,
        "t_ref": min(refs),
        "t_ours": min(ours),
        "speed_ratio": min(refs) / min(ours),
    }


def correctness_and_quality(bins: Path, f16: Path, args: argparse.Namespace) -> dict[str, Any]:
    t = args.threads
    res: dict[str, Any] = {"chunks": args.chunks, "eval_chunks": args.eval_chunks, "threads": t}

    print("MoE (tiny, random weights): both tools ...", flush=True)
    moe = moe_model()
    ref_imatrix(bins, moe, OUT / "moe.ref.gguf", 64, 8, t)
    our_imatrix(moe, OUT / "moe.ours.gguf", 64, 8, t)
    res["moe"] = compare(OUT / "moe.ours.gguf", OUT / "moe.ref.gguf")
    print(res["moe"], flush=True)

    print(f"Gemma 3 270M F16, {args.chunks} chunks of 512: llama-imatrix ...", flush=True)
    ref, ours = OUT / "gemma.ref.imatrix.gguf", OUT / "gemma.ours.imatrix.gguf"
    ref_imatrix(bins, f16, ref, 512, args.chunks, t)
    print("  quantlens imatrix ...", flush=True)
    our_imatrix(f16, ours, 512, args.chunks, t)
    res["gemma"] = compare(ours, ref)
    print(res["gemma"], flush=True)

    same_path = OUT / "use.imatrix.gguf"
    res["quants"] = {}
    for target in QUANT_TYPES:
        digests = {}
        for who, src in (("ref", ref), ("ours", ours)):
            shutil.copyfile(src, same_path)
            q = quantize(f16, target, OUT / f"q-{who}", same_path)
            digests[who] = sha256(q)
            res["quants"].setdefault(target, {})["bytes"] = q.stat().st_size
        res["quants"][target]["identical"] = digests["ref"] == digests["ours"]
        print(target, res["quants"][target], flush=True)

    print(f"KLD against the F16, {args.eval_chunks} chunks of Genesis-Exodus ...", flush=True)
    res["quality"] = {}
    for target in QUANT_TYPES:
        with_im = OUT / "q-ours" / f"gemma-3-270m-{target}.gguf"
        row = {"with": kld(with_im, f16, args.eval_chunks, t), "with_bytes": with_im.stat().st_size}
        if target == "Q2_K":  # llama.cpp refuses IQ3_XXS and IQ2_XS without a matrix
            plain = quantize(f16, target, OUT / "q-plain", None)
            row["without"] = kld(plain, f16, args.eval_chunks, t)
            row["without_bytes"] = plain.stat().st_size
        res["quality"][target] = row
        print(target, {k: v.get("kld_mean") if isinstance(v, dict) else v for k, v in row.items()})
    (OUT / "result.json").write_text(json.dumps(res, indent=2, default=str))
    return res


def _k(row: dict[str, Any] | None) -> str:
    if not row:
        return "refused by llama.cpp"
    return f"{row['kld_mean']:.4f} ± {row['kld_mean_err']:.4f}"


def _top(row: dict[str, Any] | None) -> str:
    if row and "same_top_pct" in row:  # the eval CLI's JSON (percent)
        return f"{row['same_top_pct']:.1f}%"
    return f"{100 * row['same_top']:.1f}%" if row and "same_top" in row else "-"


def _ppl(row: dict[str, Any] | None) -> str:
    return f"{row['ppl']:.3f}" if row and "ppl" in row else "-"


def section(res: dict[str, Any], args: argparse.Namespace) -> str:
    g, m = res["gemma"], res["moe"]
    cmd = (
        "python3 bench/imatrix.py --src /tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp "
        f"--chunks {res['chunks']} --eval-chunks {res.get('eval_chunks', 20)} --speed-chunks "
        f"{res['speed_chunks']} --rounds {len(res['t_ref_all'])} --threads {res['threads']}"
    )
    lines = [
        MARK_START,
        "## Importance matrices: QuantLens vs llama-imatrix",
        "",
        f"`{cmd}` (2-core CPU, no GPU; the timed runs under `flock {LOCK}`, the others "
        "niced). `llama-imatrix` is built from the vendored llama.cpp of the pinned "
        "llama-cpp-python; both get the same model, calibration text "
        "(`resources/texts/kjv-leviticus-numbers.txt`), context 512, "
        f"batch 2048 and {res['chunks']} chunks, `--no-ppl` for llama-imatrix.",
        "",
        "| Check | Result |",
        "|---|---|",
        f"| Gemma 3 270M F16: tensors | {g['tensors']} (sums and counts of "
        f"{g['tensors'] // 2} matrices), same names and shapes: {g['same_names']} |",
        f"| Gemma: largest relative difference of any value | {g['worst']:.2e} (target <= 1e-4) |",
        f"| Gemma: files byte for byte | {'identical' if g['bytes_equal'] else 'differ'} |",
        f"| Tiny MoE (8 experts, top 2, random weights), ctx 64, 8 chunks: largest relative "
        f"difference | {m['worst']:.2e}, per-expert counts equal, files "
        f"{'identical' if m['bytes_equal'] else 'differ'} |",
    ]
    for target, q in res["quants"].items():
        lines.append(
            f"| {target} quantized with their file vs ours | "
            f"{'byte-identical' if q['identical'] else 'DIFFERENT'} ({q['bytes']:,} bytes) |"
        )
    lines += [
        f"| Wall time of {res['speed_chunks']} chunks, best of {len(res['t_ref_all'])} turns, "
        f"llama-imatrix / quantlens imatrix | {res['t_ref']:.1f} s / {res['t_ours']:.1f} s: "
        f"speed ratio **{res['speed_ratio']:.2f}** (goal >= 0.9); every turn: "
        f"{', '.join(f'{x:.1f}' for x in res['t_ref_all'])} / "
        f"{', '.join(f'{x:.1f}' for x in res['t_ours_all'])} s |",
        "",
        f"Quality: KL divergence against the F16 on the evaluation text (Genesis-Exodus, "
        f"{res.get('eval_chunks', 20)} chunks of 512, `quantlens eval Q --base F16 --chunks "
        f"{res.get('eval_chunks', 20)}`), quants made with our matrix from the other text "
        "(Leviticus-Numbers):",
        "",
        "| Type | Size | Mean KLD with imatrix | without | Same top token with / without "
        "| PPL with / without |",
        "|---|---|---|---|---|---|",
    ]
    for target, row in res["quality"].items():
        lines.append(
            f"| {target} | {row['with_bytes'] / 2**20:.1f} MiB | {_k(row['with'])} | "
            f"{_k(row.get('without'))} | {_top(row['with'])} / {_top(row.get('without'))} | "
            f"{_ppl(row['with'])} / {_ppl(row.get('without'))} |"
        )
    lines += [
        "",
        "IQ3_XXS and IQ2_XS cannot be made without a matrix: llama.cpp refuses "
        "(`tensor_requires_imatrix` in src/llama-quant.cpp). The sizes differ little because "
        "Gemma's 262,144-token embedding matrix (also its output matrix, so llama.cpp keeps it "
        "at Q8_0: 178 MB) is most of each file. Steps 1, 2 and 4 can run alone (`--no-speed`), "
        "step 3 alone (`--only-speed`); the table joins `bench/out/imatrix/result.json` and "
        "`speed.json`.",
        MARK_END,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
