"""The GGUF header reader and ModelInfo: shapes, layouts, split files, hostile files."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from qtapp.core.errors import QuantLensError
from qtapp.core.gguf.model import read_model
from qtapp.core.gguf.reader import read_gguf
from qtapp.testing.archs import (
    Qwen35MoeSpec,
    write_qwen35moe,
    write_tiny_gemma3,
    write_tiny_qwen3moe,
)


@pytest.fixture(scope="module")
def archs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("archs")
    return {
        "gemma3": write_tiny_gemma3(d / "g3.gguf"),
        "qwen3moe": write_tiny_qwen3moe(d / "q3m.gguf"),
        "qwen35moe": write_qwen35moe(d / "q35.gguf"),
    }


def test_tiny_llama_card(tiny_model: Path) -> None:
    m = read_model(tiny_model)
    assert m.architecture == "llama"
    assert m.n_layer == 4 and m.n_embd == 256
    assert m.n_head == [4] * 4 and m.n_head_kv == [2] * 4
    assert m.head_dim_k == m.head_dim_v == 64
    assert m.file_type == "F16"
    assert not m.is_moe and m.n_params_active == m.n_params
    assert m.weights_bytes + m.meta_bytes == m.size_on_disk
    assert set(m.type_histogram) == {"F16", "F32"}
    from qtapp.testing.tiny import tiny_vocab

    assert m.n_vocab == len(tiny_vocab()[0])
    assert read_gguf(tiny_model).tensors[0].name == "token_embd.weight"


def test_gemma3_sliding_window_layers(archs: dict[str, Path]) -> None:
    m = read_model(archs["gemma3"])
    assert m.n_swa == 128
    # llama.cpp's gemma3: pattern 6, the 6th layer of each group is global
    assert m.swa_layers == [True] * 5 + [False]
    assert not any(m.recurrent_layers)


def test_qwen3moe_active_parameters(archs: dict[str, Path]) -> None:
    m = read_model(archs["qwen3moe"])
    assert m.is_moe and m.n_expert == 8 and m.n_expert_used == 2
    expert = sum(t.n_elements for t in m.tensors if t.is_expert)
    assert m.n_params_active == m.n_params - expert + expert * 2 // 8
    assert m.n_params_active < m.n_params


def test_qwen35moe_hybrid_layout(archs: dict[str, Path]) -> None:
    m = read_model(archs["qwen35moe"])
    assert m.recurrent_layers == [True, True, True, False]
    assert m.is_hybrid and m.n_expert_shared == 1
    assert m.ssm["state_size"] == 64 and m.ssm["group_count"] == 2


def test_split_files_are_read_together(tmp_path: Path, tiny_model: Path) -> None:
    from gguf import GGUFReader, GGUFWriter

    reader = GGUFReader(tiny_model)
    names = [t.name for t in reader.tensors]
    halves = [names[: len(names) // 2], names[len(names) // 2 :]]
    for i, part in enumerate(halves, start=1):
        w = GGUFWriter(str(tmp_path / f"m-{i:05d}-of-00002.gguf"), "llama")
        for f in reader.fields.values():
            if f.name.startswith("GGUF.") or f.name == "general.architecture":
                continue
            if i == 1:
                val = f.contents()
                w.add_key_value(f.name, val, f.types[0], f.types[-1] if len(f.types) > 1 else None)
        w.add_uint16("split.no", i - 1)
        w.add_uint16("split.count", 2)
        for t in reader.tensors:
            if t.name in part:
                w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    m = read_model(tmp_path / "m-00002-of-00002.gguf")
    single = read_model(tiny_model)
    assert len(m.shards) == 2
    assert m.path.name == "m-00002-of-00002.gguf"
    assert m.weights_bytes == single.weights_bytes
    assert len(m.tensors) == len(single.tensors)
    (tmp_path / "m-00001-of-00002.gguf").unlink()
    with pytest.raises(QuantLensError, match="missing"):
        read_model(tmp_path / "m-00002-of-00002.gguf")


# -- malformed and hostile files -----------------------------------------------------------------
def _expect_clear_error(path: Path, match: str) -> None:
    with pytest.raises(QuantLensError, match=match) as info:
        read_model(path)
    assert info.value.hint  # says what to do


def test_not_a_gguf(tmp_path: Path) -> None:
    p = tmp_path / "notes.gguf"
    p.write_text("hello, I am a text file" * 10)
    _expect_clear_error(p, "does not start with 'GGUF'")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    _expect_clear_error(p, "GGUF")


def test_truncated_header(tmp_path: Path, tiny_model: Path) -> None:
    data = tiny_model.read_bytes()
    for cut in (30, 2000, 9000):
        p = tmp_path / f"cut{cut}.gguf"
        p.write_bytes(data[:cut])
        _expect_clear_error(p, "truncated|ends inside")


def test_truncated_tensor_data(tmp_path: Path, tiny_model: Path) -> None:
    data = tiny_model.read_bytes()
    p = tmp_path / "short.gguf"
    p.write_bytes(data[: len(data) - 4096])
    _expect_clear_error(p, "truncated")


def test_hostile_counts(tmp_path: Path) -> None:
    p = tmp_path / "hostile.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 60, 1 << 60) + b"\0" * 64)
    _expect_clear_error(p, "claims")


def test_hostile_string_length(tmp_path: Path) -> None:
    key = b"general.architecture"
    body = struct.pack("<Q", len(key)) + key + struct.pack("<I", 8) + struct.pack("<Q", 1 << 62)
    p = tmp_path / "hostile-str.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + body + b"x" * 100)
    _expect_clear_error(p, "truncated|ends inside")


def test_hostile_array_count(tmp_path: Path) -> None:
    key = b"tokenizer.ggml.tokens"
    body = (
        struct.pack("<Q", len(key))
        + key
        + struct.pack("<I", 9)
        + struct.pack("<I", 8)
        + struct.pack("<Q", 1 << 40)
    )
    p = tmp_path / "hostile-arr.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + body + b"\0" * 100)
    _expect_clear_error(p, "truncated|ends inside")


def test_bad_version(tmp_path: Path) -> None:
    p = tmp_path / "v9.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 9, 0, 0) + b"\0" * 64)
    _expect_clear_error(p, "version 9")


def test_big_vocabulary_is_read(tmp_path: Path) -> None:
    """A 262k-token vocabulary (Gemma's size) is read and its size reported."""
    spec = Qwen35MoeSpec(n_vocab=262144, n_layer=4)
    path = write_qwen35moe(tmp_path / "bigvocab.gguf", spec)
    m = read_model(path)
    assert m.n_vocab == 262144
