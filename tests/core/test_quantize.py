"""Quantize jobs on a tiny generated model: every family loads in llama.cpp, sizes match the
dry run, recipes change exactly the tensors they name, importance matrices are used."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from qtapp.core.fit.quants import Recipe, Rule
from qtapp.core.jobs.events import Failed, Finished, Progress
from qtapp.core.quantize.imatrix import (
    load_imatrix,
    random_imatrix_for,
    write_imatrix_dat,
    write_imatrix_gguf,
)
from qtapp.core.quantize.jobs import (
    QuantizeOptions,
    model_stem,
    output_path,
    quantize_spec,
    run_quantize,
)

_LOAD_SCRIPT = """
import json, sys, llama_cpp
llama_cpp.llama_backend_init()
out = {}
for path in sys.argv[1:]:
    p = llama_cpp.llama_model_default_params()
    p.n_gpu_layers = 0
    m = llama_cpp.llama_model_load_from_file(path.encode(), p)
    out[path] = 0 if not m else int(llama_cpp.llama_model_n_params(m))
    if m:
        llama_cpp.llama_model_free(m)
print(json.dumps(out))
"""


def loaded_params(paths: list[Path]) -> dict[str, int]:
    """Load each file with llama.cpp in a subprocess: path -> parameter count (0 = failed)."""
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tensor_types(path: Path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in GGUFReader(path).tensors}


def tensor_data_bytes(path: Path) -> int:
    return sum(int(t.n_bytes) for t in GGUFReader(path).tensors)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def quantize(model: Path, target: str, out_dir: Path, **options) -> tuple[object, list]:
    events: list = []
    spec = quantize_spec(model, target, QuantizeOptions(out_dir=str(out_dir), **options))
    terminal = run_quantize(spec, on_event=events.append)
    return terminal, events


@pytest.fixture(scope="module")
def imatrix_files(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("imatrix")
    values = random_imatrix_for(tiny_model)
    return {
        "gguf": write_imatrix_gguf(
            folder / "tiny.imatrix.gguf",
            {k: v * 7 for k, v in values.items()},
            {k: [7] for k in values},
            chunk_count=3,
        ),
        "dat": write_imatrix_dat(folder / "tiny.imatrix.dat", values, ncall=5),
    }


def test_every_family_loads_and_matches_dry_run(
    tiny_model: Path, tmp_path: Path, imatrix_files: dict[str, Path]
) -> None:
    before = sha256(tiny_model)
    targets = {
        "Q4_0": {},
        "Q8_0": {},
        "Q4_K_M": {},
        "Q3_K_S": {},
        "IQ4_NL": {},
        "BF16": {},
        "F16": {},
        "IQ2_XXS": {"imatrix": str(imatrix_files["gguf"])},
        # with an imatrix llama.cpp gives attn_v IQ3_XXS (IQ3_S without): sizes must follow
        "IQ3_XXS": {"imatrix": str(imatrix_files["dat"])},
    }
    outputs: list[Path] = []
    for target, extra in targets.items():
        terminal, events = quantize(tiny_model, target, tmp_path, **extra)
        assert isinstance(terminal, Finished), (target, terminal)
        result = terminal.result
        out = Path(result["path"])
        assert out == output_path(tiny_model, target, tmp_path)
        # the file's tensor data is exactly what the dry run predicted
        assert tensor_data_bytes(out) == result["tensor_bytes"], target
        assert result["bytes"] == out.stat().st_size
        assert 1.0 < result["bpw"] < 17.0
        quantized = [e for e in events if isinstance(e, Progress) and e.detail.get("count")]
        assert quantized[-1].fraction == pytest.approx(1.0)
        assert quantized[-1].detail["done_bytes"] == result["tensor_bytes"]
        outputs.append(out)
    assert not list(tmp_path.glob("*.part"))
    counts = loaded_params(outputs)
    assert all(n > 0 for n in counts.values()), counts
    assert len(set(counts.values())) == 1  # every quant has the source's parameters
    types = tensor_types(outputs[list(targets).index("IQ2_XXS")])
    assert types["blk.0.ffn_up.weight"] == "IQ2_XXS"
    iq3 = tensor_types(outputs[list(targets).index("IQ3_XXS")])
    assert iq3["blk.0.attn_v.weight"] == "IQ3_XXS"  # the choice llama.cpp makes with an imatrix
    assert sha256(tiny_model) == before


def test_recipe_changes_exactly_the_tensors_it_names(tiny_model: Path, tmp_path: Path) -> None:
    recipe = Recipe(
        "my-mix",
        "Q4_0",
        (
            Rule(r"blk\.{last}\.ffn_down", "Q8_0", "last ffn_down"),
            Rule(r"attn_v", "Q6_K", "values"),
        ),
        builtin=False,
    )
    plain, _ = quantize(tiny_model, "Q4_0", tmp_path, pure=True)
    mixed, _ = quantize(tiny_model, "my-mix", tmp_path, pure=True, user_recipes=[recipe.to_dict()])
    assert isinstance(plain, Finished) and isinstance(mixed, Finished)
    base = tensor_types(Path(plain.result["path"]))
    got = tensor_types(Path(mixed.result["path"]))
    changed = {name for name in base if base[name] != got[name]}
    expected = {"blk.3.ffn_down.weight"} | {f"blk.{i}.attn_v.weight" for i in range(4)}
    assert changed == expected
    assert got["blk.3.ffn_down.weight"] == "Q8_0"
    assert got["blk.0.attn_v.weight"] == "Q6_K"
    assert Path(mixed.result["path"]).name == "tiny-llama-my-mix.gguf"


def test_iq2_needs_an_imatrix_and_uses_it(
    tiny_model: Path, tmp_path: Path, imatrix_files: dict[str, Path]
) -> None:
    refused, events = quantize(tiny_model, "IQ2_XS", tmp_path)
    assert isinstance(refused, Failed)
    assert "importance matrix" in refused.message and "IQ2_XS" in refused.message
    # refused before writing anything
    assert not any(e.detail.get("phase") == "quantize" for e in events if isinstance(e, Progress))
    assert list(tmp_path.iterdir()) == []
    done, _ = quantize(tiny_model, "IQ2_XS", tmp_path, imatrix=str(imatrix_files["dat"]))
    assert isinstance(done, Finished), done
    fields = GGUFReader(done.result["path"]).fields
    assert fields["quantize.imatrix.file"].contents() == str(imatrix_files["dat"])
    assert fields["quantize.imatrix.entries_count"].contents() == 30
    assert fields["quantize.imatrix.chunks_count"].contents() == 1


def test_imatrix_gguf_and_dat_load_the_same_values(
    tiny_model: Path, imatrix_files: dict[str, Path]
) -> None:
    values = random_imatrix_for(tiny_model)
    from_gguf = load_imatrix(imatrix_files["gguf"])
    from_dat = load_imatrix(imatrix_files["dat"])
    assert not from_gguf.legacy and from_dat.legacy
    assert set(from_gguf.data) == set(from_dat.data) == set(values)
    for name, expected in values.items():
        np.testing.assert_allclose(from_gguf.data[name], expected, rtol=1e-6)
        np.testing.assert_allclose(from_dat.data[name], expected, rtol=1e-6)
    assert from_gguf.chunk_count == 3 and from_gguf.datasets == ["test.txt"]
    assert dict(from_gguf.kv_overrides())["quantize.imatrix.chunks_count"] == 3


def test_imatrix_zero_count_gives_ones(tmp_path: Path) -> None:
    path = write_imatrix_gguf(
        tmp_path / "m.gguf", {"a.weight": np.full(512, 4.0)}, {"a.weight": [2, 0]}
    )
    data = load_imatrix(path).data["a.weight"]
    assert data[:256] == [2.0] * 256 and data[256:] == [1.0] * 256


def test_bad_imatrix_file_is_refused_clearly(tiny_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x02\x00\x00\x00garbage")
    terminal, _ = quantize(tiny_model, "Q4_0", tmp_path / "out", imatrix=str(bad))
    assert isinstance(terminal, Failed)
    assert "not a usable importance matrix" in terminal.message


def test_requantize_needs_consent_and_existing_files_are_kept(
    tiny_model: Path, tmp_path: Path
) -> None:
    first, _ = quantize(tiny_model, "Q8_0", tmp_path)
    assert isinstance(first, Finished)
    q8 = Path(first.result["path"])
    refused, _ = quantize(q8, "Q4_0", tmp_path / "re")
    assert isinstance(refused, Failed) and "already quantized" in refused.message
    done, _ = quantize(q8, "Q4_0", tmp_path / "re", allow_requantize=True)
    assert isinstance(done, Finished)
    # an existing output is never replaced without consent
    stamp = q8.stat().st_mtime_ns
    again, _ = quantize(tiny_model, "Q8_0", tmp_path)
    assert isinstance(again, Failed) and "already exists" in again.message
    assert q8.stat().st_mtime_ns == stamp
    replaced, _ = quantize(tiny_model, "Q8_0", tmp_path, overwrite=True)
    assert isinstance(replaced, Finished)
    assert q8.stat().st_mtime_ns != stamp


def test_output_naming() -> None:
    assert model_stem("gemma-3-270m-it-Q4_K_M.gguf") == "gemma-3-270m-it"
    assert model_stem("/m/Llama-70B-F16-00001-of-00003.gguf") == "Llama-70B"
    assert model_stem("tiny-llama-F16.gguf") == "tiny-llama"
    assert output_path("a/x-BF16.gguf", "Q2_K_XL", "/o") == Path("/o/x-Q2_K_XL.gguf")


def test_cli_json(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qtapp.__main__ import main

    code = main(
        [
            "quantize",
            str(tiny_model),
            "--type",
            "Q4_K_M",
            "--type",
            "q3_k_xl",
            "--out",
            str(tmp_path),
            "--json",
            "--threads",
            "2",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert [r["type"] for r in rows] == ["Q4_K_M", "Q3_K_XL"]
    for row in rows:
        assert Path(row["path"]).stat().st_size == row["bytes"]
        assert row["seconds"] > 0 and row["bpw"] > 3 and row["llama_cpp"]
    assert "[" in captured.err and "done in" in captured.err
    from qtapp.core.results.store import ResultsStore

    with ResultsStore.open() as store:
        runs = store.list_runs(kind="quantize")
    assert sorted(r.recipe for r in runs) == ["Q3_K_XL", "Q4_K_M"]
    for run in runs:
        assert run.state == "finished"
        assert run.model_path == run.metrics["path"]
        assert run.metric("bytes") == Path(run.model_path).stat().st_size
        assert run.settings["source"] == str(tiny_model)


def test_keep_split_writes_one_output_per_shard(tmp_path: Path, monkeypatch) -> None:
    import gguf

    import qtapp.testing.tiny as synth

    monkeypatch.setattr(
        synth, "GGUFWriter", lambda path, arch: gguf.GGUFWriter(path, arch, split_max_tensors=15)
    )
    synth.write_tiny_llama(tmp_path / "src" / "tiny-F16.gguf")
    first = tmp_path / "src" / "tiny-F16-00001-of-00003.gguf"
    assert first.exists()
    split, _ = quantize(first, "Q4_0", tmp_path / "out", keep_split=True)
    assert isinstance(split, Finished), split
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"tiny-Q4_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert split.result["paths"] == [str(tmp_path / "out" / n) for n in names]
    assert (
        sum(tensor_data_bytes(tmp_path / "out" / n) for n in names) == split.result["tensor_bytes"]
    )
    merged, _ = quantize(first, "Q4_0", tmp_path / "one")
    assert isinstance(merged, Finished)
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["tiny-Q4_0.gguf"]
    counts = loaded_params([tmp_path / "out" / names[0], Path(merged.result["path"])])
    assert len(set(counts.values())) == 1 and min(counts.values()) > 0


def test_user_recipes_round_trip_and_bad_files_are_skipped() -> None:
    from qtapp.core.fit.recipes_store import (
        load_user_recipes,
        recipes_dir,
        save_user_recipe,
        validate_name,
    )

    recipe = Recipe("careful", "Q4_K_M", (Rule(r"ffn_down", "Q6_K", "why not"),), "mine")
    save_user_recipe(recipe)
    (recipes_dir() / "broken.json").write_text("{not json", encoding="utf-8")
    loaded = load_user_recipes()
    assert list(loaded) == ["careful"]
    assert loaded["careful"].rules == recipe.rules and not loaded["careful"].builtin
    assert validate_name("Q4_K_XL") and validate_name("q8_0") and validate_name("a/b")
    assert validate_name("careful") == ""
    with pytest.raises(ValueError, match="bad pattern"):
        save_user_recipe(Recipe("oops", "Q4_K_M", (Rule("ffn_(", "Q6_K"),)))
