"""Fill a results store with plausible runs (for tests, the Compare benchmark and screenshots).

Figures are shaped like real llama.cpp quants of two small models; they are not measurements.
"""

from __future__ import annotations

import math

import numpy as np

from qtapp.core.results.store import ResultsStore

MIB = 1024**2
#: (label, bpw, relative size to F16, KLD, same-top %, tg speed factor)
QUANTS = [
    ("F16", 16.0, 1.0, 0.0, 100.0, 1.0),
    ("Q8_0", 8.5, 0.532, 0.0009, 98.9, 1.55),
    ("Q6_K", 6.56, 0.418, 0.0041, 97.6, 1.8),
    ("Q5_K_M", 5.7, 0.366, 0.0105, 96.1, 1.95),
    ("Q4_K_M", 4.89, 0.318, 0.0290, 93.8, 2.1),
    ("Q4_K_XL", 5.1, 0.331, 0.0215, 94.6, 2.05),
    ("Q3_K_M", 3.91, 0.262, 0.0910, 89.0, 2.3),
    ("Q2_K", 3.0, 0.205, 0.3100, 79.5, 2.5),
]
HARDWARE = {
    "driver_version": "570.124.06",
    "gpus": [{"name": "NVIDIA H200", "total_bytes": 143771 * MIB}],
}


def fill_store(
    store: ResultsStore,
    models: dict[str, tuple[float, float]] | None = None,
    points: int = 64,
    eval_only: bool = False,
) -> list[int]:
    """Evaluation runs for every quant of each model, plus one plan run per model.

    ``models`` maps a name to (F16 size in MiB, base PPL). Returns the evaluation run ids.
    """
    models = models or {"Gemma 3 270m": (511.0, 15.62), "Gemma 3 1b": (1907.0, 11.84)}
    ids = []
    for model, (f16_mib, base_ppl) in models.items():
        if not eval_only:
            plan = store.begin_run(
                "plan",
                f"/models/{model}-F16.gguf",
                "plan",
                hardware=HARDWARE,
                model_name=model,
                llama_version="b6000",
            )
            rows = [
                {
                    "type": q[0],
                    "predicted_tg_tps": round(900 * q[5] * 511 / f16_mib, 1),
                    "predicted_pp_tps": round(30000 * 511 / f16_mib),
                }
                for q in QUANTS
            ]
            store.finish_run(plan, "finished", {"rows": rows, "recommended": "Q8_0"})
        for label, bpw, rel, kld, same, _speed in QUANTS:
            size = f16_mib * rel * MIB
            ppl = base_ppl * math.exp(kld * 0.9)
            run = store.begin_run(
                "eval",
                f"/models/{model}-{label}.gguf",
                label,
                recipe="Q4_K_M + attn Q6_K" if label.endswith("_XL") else None,
                hardware=HARDWARE,
                settings={"ctx": 512, "chunks": 40},
                model_name=model,
                llama_version="llama-cpp-python 0.3.36",
            )
            xs = np.arange(1, points + 1, dtype=float) * 256
            wobble = 1 + 0.08 * np.exp(-np.arange(points) / (points / 6))
            store.add_points(
                run,
                "ppl",
                xs.tolist(),
                (ppl * wobble).tolist(),
                (ppl * 0.3 / np.sqrt(np.arange(1, points + 1))).tolist(),
            )
            if kld:
                store.add_points(run, "kld", xs.tolist(), (kld * wobble).tolist())
            metrics = {
                "ppl": ppl,
                "ppl_err": ppl * 0.012,
                "bpb": math.log2(ppl) / 4.0,  # about 4 bytes of text per token
                "tokens": points * 256,
                "bytes": size,
                "bpw": bpw,
                "kld_mean": kld,
                "kld_p99": kld * 9 + 0.001,
                "same_top_pct": same,
            }
            if label in ("F16", "Q8_0", "Q4_K_M"):
                metrics.update(
                    pp_tps=round(26000 * 511 / f16_mib),
                    tg_tps=round(880 * _speed * 511 / f16_mib, 1),
                )
            store.finish_run(run, "finished", metrics)
            ids.append(run)
    return ids


def fill_many(store: ResultsStore, n_runs: int = 100, points: int = 1000) -> list[int]:
    """``n_runs`` finished evaluations with ``points``-point PPL and KLD curves (the benchmark)."""
    rng = np.random.default_rng(0)
    ids = []
    for i in range(n_runs):
        model = f"model-{i % 5}"
        label, bpw, rel, kld, same, _s = QUANTS[i % len(QUANTS)]
        run = store.begin_run(
            "eval",
            f"/models/{model}-{label}-{i}.gguf",
            f"{label}-{i}",
            model_name=model,
            llama_version="bench",
        )
        xs = np.arange(points, dtype=float) * 512
        store.add_points(run, "ppl", xs, 10 + rng.random(points), rng.random(points) * 0.1)
        store.add_points(run, "kld", xs, kld + rng.random(points) * 0.01)
        store.finish_run(
            run,
            "finished",
            {
                "ppl": 10 + kld * 10,
                "ppl_err": 0.1,
                "bpw": bpw,
                "bytes": (1 + i % 5) * 2e9 * rel,
                "kld_mean": kld,
                "same_top_pct": same,
                "tg_tps": 100 / rel,
            },
        )
        ids.append(run)
    return ids
