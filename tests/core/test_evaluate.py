"""The evaluate and speed handlers on tiny generated models, through the real worker child."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate.base_cache import cache_size, clear_cache
from qtapp.core.evaluate.runs import EvalRecorder
from qtapp.core.jobs.events import Cancelled, Point
from qtapp.core.jobs.job import Job, JobSpec, run_job
from qtapp.testing.tiny import tiny_vocab
from tests.quant_helper import quantize_copy

CTX = 256


@pytest.fixture(scope="module")
def tiny_quants(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("tiny-quants")
    return {t: quantize_copy(tiny_model, out / f"tiny-{t}.gguf", t) for t in ("Q8_0", "Q2_K")}


def _targets_rows(tokens: np.ndarray, chunks: int) -> np.ndarray:
    first = CTX // 2
    return np.concatenate([tokens[c * CTX + first + 1 : c * CTX + CTX] for c in range(chunks)])


def test_ppl_equals_numpy_from_full_logits(tiny_model: Path, tmp_path: Path) -> None:
    dump = tmp_path / "logits.npz"
    result = run_job(
        "evaluate", model=str(tiny_model), ctx=CTX, chunks=5, threads=2, dump_logits=str(dump)
    )
    data = np.load(dump)
    logits = data["logits"].astype(np.float64)
    targets = _targets_rows(data["tokens"], 5)
    assert logits.shape[0] == len(targets) == 5 * (CTX // 2 - 1)
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(len(targets)), targets]
    ppl = math.exp(nll.mean())
    err = ppl * nll.std() / math.sqrt(len(nll) - 1)
    assert result["tokens"] == len(nll)
    assert result["ppl"] == pytest.approx(ppl, rel=1e-6)
    assert result["ppl_err"] == pytest.approx(err, rel=1e-5)
    assert data["tokens"][0] == 1  # tokenized with BOS
    # bits per byte: the same log-likelihoods over the UTF-8 bytes of the scored tokens' text,
    # here from the vocabulary's pieces (SPM: "▁" is a space, <0xNN> one byte, controls none)
    vocab, _, kinds = tiny_vocab()

    def piece_bytes(t: int) -> int:
        if kinds[t] == 6:  # TokenType.BYTE
            return 1
        if kinds[t] != 1:  # only NORMAL pieces stand for text
            return 0
        return len(vocab[t].replace("\u2581", " ").encode())

    n_bytes = sum(piece_bytes(int(t)) for t in targets)
    assert result["text_bytes"] == n_bytes > len(targets)
    assert result["bpb"] == pytest.approx(nll.sum() / math.log(2) / n_bytes, rel=1e-6)
    assert result["bpb_err"] == pytest.approx(
        nll.std() / math.sqrt(len(nll) - 1) * len(nll) / math.log(2) / n_bytes, rel=1e-5
    )


def test_kld_against_itself_is_zero(tiny_model: Path) -> None:
    r = run_job(
        "evaluate", model=str(tiny_model), base=str(tiny_model), ctx=CTX, chunks=3, threads=2
    )
    assert abs(r["kld_mean"]) < 1e-4
    assert r["same_top_pct"] == pytest.approx(100.0)
    assert math.isfinite(r["ppl"]) and r["tokens"] == 3 * (CTX // 2 - 1)
    assert cache_size() > 0
    assert clear_cache() > 0 and cache_size() == 0


def test_lower_bit_quant_has_higher_kld(tiny_model: Path, tiny_quants: dict[str, Path]) -> None:
    res = {
        t: run_job("evaluate", model=str(p), base=str(tiny_model), ctx=CTX, chunks=3, threads=2)
        for t, p in tiny_quants.items()
    }
    assert 0 < res["Q8_0"]["kld_mean"] < res["Q2_K"]["kld_mean"]
    assert res["Q8_0"]["same_top_pct"] > res["Q2_K"]["same_top_pct"]
    for r in res.values():
        assert r["kld_mean_err"] > 0 and math.isfinite(r["kld_p99"])
        assert r["kld_max"] >= r["kld_p99"] >= r["kld_median"]


def test_cancel_keeps_partial_results(tiny_model: Path) -> None:
    params = {"model": str(tiny_model), "ctx": CTX, "batch": CTX, "threads": 1}
    rec = EvalRecorder(tiny_model, params)
    job = Job(JobSpec("evaluate", params))
    seen = 0
    for ev in job.events():
        rec.add(ev)
        if isinstance(ev, Point) and ev.series == "ppl":
            seen += 1
            if seen == 3:
                job.cancel(grace=5)
    assert isinstance(ev, Cancelled)
    assert rec.result["partial"] is True
    assert rec.result.get("chunks_done", 3) >= 3  # absent only when the child was killed
    assert math.isfinite(rec.result["ppl"]) and rec.result["tokens"] >= 3 * (CTX // 2 - 1)
    assert len(rec.series["ppl"].ys) >= 3


def test_short_and_empty_text_give_clear_messages(tiny_model: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("In the beginning.\n")
    with pytest.raises(QuantLensError, match=r"at least \d+ are needed"):
        run_job("evaluate", model=str(tiny_model), text=str(short), ctx=CTX)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(QuantLensError, match="empty"):
        run_job("evaluate", model=str(tiny_model), text=str(empty), ctx=CTX)
    with pytest.raises(QuantLensError, match="not found"):
        run_job("evaluate", model=str(tmp_path / "nope.gguf"))


def test_speed_like_llama_bench(tiny_model: Path) -> None:
    events = []
    job = Job(
        JobSpec(
            "speed",
            {"model": str(tiny_model), "reps": 3, "n_prompt": 128, "n_gen": 16, "threads": 2},
        )
    )
    for ev in job.events():
        events.append(ev)
    result = events[-1].result
    assert result["pp_tps"] > 0 and result["tg_tps"] > 0
    assert len(result["pp_samples_ns"]) == 3 and result["pp_tps_sd"] >= 0
    pts = [e for e in events if isinstance(e, Point) and e.series == "tg_tps"]
    assert [p.x for p in pts] == [1, 2, 3]


def test_cli_json_lines(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qtapp.__main__ import main

    rc = main(
        [
            "eval",
            str(tiny_model),
            "--base",
            str(tiny_model),
            "--ctx",
            str(CTX),
            "--chunks",
            "2",
            "--threads",
            "2",
            "--json",
        ]
    )
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    chunks = [x for x in lines if "chunk" in x]
    assert [c["chunk"] for c in chunks] == [1, 2]
    final = lines[-1]
    for key in (
        "ppl",
        "ppl_err",
        "tokens",
        "kld_mean",
        "kld_mean_err",
        "kld_p99",
        "same_top_pct",
        "dp_rms",
    ):
        assert key in final, key
    results = pytest.importorskip("qtapp.core.results.store")
    runs = results.ResultsStore.open().list_runs(kind="eval")
    assert runs and runs[0].state == "finished"


def test_background_recorders_write_in_the_one_store_thread(tiny_model: Path) -> None:
    """A background recorder starts no thread of its own (a thread start blocked the GUI thread
    on busy cores): its writes run in order in the one store thread, and wait() waits for them."""
    from qtapp.core.evaluate.runs import STORE_THREAD, start_store_thread
    from qtapp.core.jobs.events import Finished
    from qtapp.core.results.store import ResultsStore

    start_store_thread()
    threads_before = set(threading.enumerate())
    rec = EvalRecorder(tiny_model, {"model": str(tiny_model)}, background=True, hardware={})
    stored_in: list[str] = []
    rec.begin()
    rec.add(Point(series="ppl", x=127, y=9.5, err=0.5))
    rec.add(Finished(result={"ppl": 9.5}))
    rec.finish(on_stored=lambda: stored_in.append(threading.current_thread().name))
    rec.wait()
    assert stored_in and stored_in[0].startswith(STORE_THREAD)
    assert set(threading.enumerate()) <= threads_before
    store = ResultsStore.open()
    try:
        (run,) = [r for r in store.list_runs() if r.id == rec.run_id]
        assert run.state == "finished" and run.metrics["ppl"] == 9.5
    finally:
        store.close()
