"""Discovery finds GGUF files laid out like each store, and survives the file system's traps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter, LlamaFileType

from qtapp.core.app import discovery
from qtapp.core.app.discovery import FOLDER, HF, LLAMACPP, LMSTUDIO, OLLAMA, default_locations, scan
from qtapp.core.gguf.reader import GGUFFormatError, peek_gguf, read_gguf


def write_gguf(path: Path, arch: str = "llama", ftype: int | None = 15, **extra: int) -> Path:
    """A header-only-sized GGUF: a few keys, a vocabulary array to skip, one tiny tensor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), arch)
    writer.add_name(f"test {arch}")
    writer.add_token_list([f"tok{i}" for i in range(300)])
    if ftype is not None:
        writer.add_file_type(ftype)
    for key, value in extra.items():
        writer.add_uint16(key.replace("_", "."), value)
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 32), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture()
def stores(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    home = tmp_path / "home"
    # Hugging Face: snapshots hold relative links into blobs/
    repo = home / ".cache/huggingface/hub/models--acme--Tiny-GGUF"
    blob = write_gguf(repo / "blobs" / "abc123", ftype=int(LlamaFileType.MOSTLY_Q8_0))
    snap = repo / "snapshots" / "rev1"
    snap.mkdir(parents=True)
    (snap / "tiny-Q8_0.gguf").symlink_to(Path("../../blobs/abc123"))
    snap2 = repo / "snapshots" / "rev2"  # the same blob from a second revision: listed once
    snap2.mkdir(parents=True)
    (snap2 / "tiny-Q8_0.gguf").symlink_to(blob)
    # LM Studio
    write_gguf(home / ".lmstudio/models/lmstudio-community/Qwen-GGUF/qwen-Q4_K_M.gguf", "qwen2")
    # llama.cpp cache, with a split model in two shards
    cache = home / "llcache"
    write_gguf(cache / "big-00001-of-00002.gguf", "gemma3", split_count=2)
    (cache / "big-00002-of-00002.gguf").write_bytes(b"\0" * 1000)
    # Ollama: a manifest pointing at a blob
    om = home / ".ollama/models"
    write_gguf(om / f"blobs/sha256-{'d' * 64}", "phi3", ftype=int(LlamaFileType.MOSTLY_Q4_0))
    manifest = om / "manifests/registry.ollama.ai/library/phi3/mini"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(
        json.dumps(
            {
                "layers": [
                    {"mediaType": "application/vnd.ollama.image.license", "digest": "sha256:1"},
                    {
                        "mediaType": "application/vnd.ollama.image.model",
                        "digest": "sha256:" + "d" * 64,
                    },
                ]
            }
        )
    )
    # a user folder with a broken link, a symlink loop and a non-GGUF .gguf
    user = tmp_path / "mine"
    write_gguf(user / "deep/a/b/own-F16.gguf", ftype=int(LlamaFileType.MOSTLY_F16))
    (user / "gone.gguf").symlink_to(user / "nowhere.gguf")
    (user / "deep/a/loop").symlink_to(user / "deep")
    (user / "fake.gguf").write_bytes(b"not a model at all")
    env = {"LLAMA_CACHE": str(cache)}
    return home, env | {"_user": str(user)}


def _scan(home: Path, env: dict[str, str], **kw: object) -> discovery.ScanResult:
    user = env.pop("_user", None)
    return scan(home=home, env=env, extra_dirs=[user] if user else [], **kw)  # type: ignore[arg-type]


def test_finds_every_store(stores: tuple[Path, dict[str, str]]) -> None:
    home, env = stores
    result = _scan(home, dict(env))
    by_name = {h.name: h for h in result.hits}
    hf = by_name["acme/Tiny-GGUF/tiny-Q8_0.gguf"]
    assert (hf.source, hf.architecture, hf.file_type) == (HF, "llama", "Q8_0")
    assert hf.path.name == "tiny-Q8_0.gguf" and hf.size > 0
    assert sum(1 for h in result.hits if h.source == HF) == 1  # two snapshots, one blob
    lms = by_name["lmstudio-community/Qwen-GGUF/qwen-Q4_K_M.gguf"]
    assert (lms.source, lms.architecture, lms.file_type) == (LMSTUDIO, "qwen2", "Q4_K_M")
    ollama = by_name["phi3:mini"]
    assert (ollama.source, ollama.architecture, ollama.file_type) == (OLLAMA, "phi3", "Q4_0")
    assert ollama.path.name == "sha256-" + "d" * 64
    own = by_name["own-F16.gguf"]
    assert (own.source, own.file_type) == (FOLDER, "F16")
    fake = by_name["fake.gguf"]
    assert fake.error and "not a GGUF" in fake.error


def test_split_shards_grouped(stores: tuple[Path, dict[str, str]]) -> None:
    home, env = stores
    hits = [h for h in _scan(home, dict(env)).hits if h.source == LLAMACPP]
    assert len(hits) == 1
    hit = hits[0]
    first = home / "llcache/big-00001-of-00002.gguf"
    assert hit.path == first and hit.shards == 2 and hit.error is None
    assert hit.size == first.stat().st_size + 1000
    assert hit.architecture == "gemma3" and hit.name == "big.gguf"


def test_missing_shard_is_reported(tmp_path: Path) -> None:
    write_gguf(tmp_path / "m-00001-of-00003.gguf")
    write_gguf(tmp_path / "m-00003-of-00003.gguf")
    [hit] = scan([discovery.Location(FOLDER, tmp_path)]).hits
    assert hit.error and "missing shard 2 of 3" in hit.error


def test_broken_link_and_loop_are_harmless(stores: tuple[Path, dict[str, str]]) -> None:
    home, env = stores
    result = _scan(home, dict(env))
    names = [h.name for h in result.hits]
    assert "gone.gguf" not in names
    assert names.count("own-F16.gguf") == 1  # the loop did not list it twice (or forever)
    assert not result.cancelled


def test_unreadable_folder_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_gguf(tmp_path / "ok/fine.gguf")
    locked = tmp_path / "locked"
    write_gguf(locked / "secret.gguf")
    locked.chmod(0)
    real_list = discovery._list_dir

    def list_dir(path: Path) -> list[os.DirEntry[str]]:
        if Path(path) == locked:  # root ignores chmod 000: inject what a user would get
            raise PermissionError(13, "Permission denied", str(path))
        return real_list(path)

    monkeypatch.setattr(discovery, "_list_dir", list_dir)
    try:
        result = scan([discovery.Location(FOLDER, tmp_path)])
    finally:
        locked.chmod(0o755)
    assert [h.name for h in result.hits] == ["fine.gguf"]
    assert any("locked" in s and "Permission denied" in s for s in result.skipped)


def test_depth_is_bounded(tmp_path: Path) -> None:
    write_gguf(tmp_path / "1/2/3/4/deep.gguf")
    assert scan([discovery.Location(FOLDER, tmp_path)], max_depth=2).hits == []
    assert len(scan([discovery.Location(FOLDER, tmp_path)], max_depth=4).hits) == 1


def test_cancel_stops_early(stores: tuple[Path, dict[str, str]]) -> None:
    home, env = stores
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    result = _scan(home, dict(env), should_stop=stop)
    assert result.cancelled and len(result.hits) < 5


def test_env_overrides_locations(tmp_path: Path) -> None:
    env = {
        "HF_HOME": str(tmp_path / "hf"),
        "LLAMA_CACHE": str(tmp_path / "ll"),
        "OLLAMA_MODELS": str(tmp_path / "ol"),
    }
    locs = {(loc.source, loc.path) for loc in default_locations(tmp_path / "h", env)}
    assert (HF, tmp_path / "hf/hub") in locs
    assert (LLAMACPP, tmp_path / "ll") in locs
    assert (OLLAMA, tmp_path / "ol") in locs
    assert (LMSTUDIO, tmp_path / "h/.lmstudio/models") in locs
    hub = {"HUGGINGFACE_HUB_CACHE": str(tmp_path / "hub2")}
    assert (HF, tmp_path / "hub2") in {(x.source, x.path) for x in default_locations(tmp_path, hub)}


def test_header_reader_rejects_bad_files(tmp_path: Path) -> None:
    good = write_gguf(tmp_path / "good.gguf", ftype=None)
    header = peek_gguf(good)
    assert header.architecture == "llama" and header.file_type == "F16"  # from tensor types
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(GGUFFormatError, match="truncated"):
        peek_gguf(truncated)
    hostile = tmp_path / "hostile.gguf"
    hostile.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (2**60).to_bytes(8, "little") * 2)
    with pytest.raises(GGUFFormatError, match="implausible"):
        peek_gguf(hostile)


def test_listing_stops_after_the_metadata_when_the_type_is_named(tmp_path: Path) -> None:
    """general.file_type present: the tensor table is never parsed (a cheap listing)."""
    named = write_gguf(tmp_path / "named.gguf", ftype=int(LlamaFileType.MOSTLY_Q8_0))
    metadata_end = 24 + read_gguf(named).kv_bytes  # magic, version, two counts, then the keys
    cut = tmp_path / "cut-after-metadata.gguf"
    cut.write_bytes(named.read_bytes()[:metadata_end])
    peek = peek_gguf(cut)
    assert (peek.architecture, peek.file_type, peek.tensor_count) == ("llama", "Q8_0", 1)
    with pytest.raises(GGUFFormatError, match="truncated|ends inside"):
        read_gguf(cut)  # the full reader needs the tensor infos
    unnamed = write_gguf(tmp_path / "unnamed.gguf", ftype=None)
    cut.write_bytes(unnamed.read_bytes()[: 24 + read_gguf(unnamed).kv_bytes])
    with pytest.raises(GGUFFormatError):
        peek_gguf(cut)  # no general.file_type: the listing must read the tensor types


def test_headers_longer_than_the_first_read_are_read_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader pulls more of the file in as it parses (here 64 bytes at first)."""
    from qtapp.core.gguf import reader as gguf_reader

    path = write_gguf(tmp_path / "vocab.gguf", ftype=None)  # 300 tokens: a few KiB of header
    whole = read_gguf(path)
    monkeypatch.setattr(gguf_reader, "PEEK_CHUNK", 64)
    monkeypatch.setattr(gguf_reader, "FULL_CHUNK", 64)
    small = read_gguf(path)
    assert (small.data_offset, small.kv_bytes, small.tensors) == (
        whole.data_offset,
        whole.kv_bytes,
        whole.tensors,
    )
    assert peek_gguf(path).file_type == "F16"  # read on into the tensor infos


def test_threads_reading_one_header_at_once_parse_it_once(tmp_path: Path, monkeypatch) -> None:
    """Opening a model asks for its header from several threads at once; the vocabulary is
    walked once and the others wait for that answer (parallel walks held the GIL the window
    needed to paint). A peek after a full read reuses it too."""
    import threading

    from qtapp.core.gguf import reader

    path = write_gguf(tmp_path / "m.gguf")
    parses: list[str] = []
    real_parse = reader._parse

    def counting_parse(c, tensors_if=None):  # noqa: ANN001, ANN202 - the reader's own signature
        parses.append(threading.current_thread().name)
        return real_parse(c, tensors_if)

    monkeypatch.setattr(reader, "_parse", counting_parse)
    start = threading.Barrier(4)
    got: list[object] = []

    def read() -> None:
        start.wait(timeout=10)
        got.append(read_gguf(path))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(got) == 4 and all(g is got[0] for g in got)
    assert len(parses) == 1
    assert peek_gguf(path).architecture == "llama" and len(parses) == 1
    path.write_bytes(path.read_bytes() + b"\0" * 32)  # a changed file is read again
    assert read_gguf(path) is not got[0] and len(parses) == 2


@pytest.mark.parametrize(
    "odd",
    [
        [],  # plain short tokens: the quick path
        ["x" * 300],  # a token over 255 bytes
        [""],  # an empty token
        ["a\0\0\0\0\0\0\0\0b"],  # zeros inside a token
    ],
)
def test_a_vocabulary_is_stepped_over_exactly(tmp_path: Path, monkeypatch, odd: list[str]) -> None:
    """The numpy shortcut over a big string array lands where the walk does, or leaves the
    strings to the walk: the key after the vocabulary reads back right either way."""
    from qtapp.core.gguf import reader

    tokens = [f"tok{i}" for i in range(6000)]
    tokens[3000:3000] = odd
    path = tmp_path / "vocab.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_uint32("after.the.vocabulary", 1234)
    w.add_tensor("t", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    quick: list[int | None] = []
    real = reader._skip_short_strings

    def spy(*args):  # noqa: ANN002, ANN202
        quick.append(real(*args))
        return quick[-1]

    monkeypatch.setattr(reader, "_skip_short_strings", spy)
    header = read_gguf(path)
    assert header.metadata["after.the.vocabulary"] == 1234
    assert header.metadata["tokenizer.ggml.tokens"].count == len(tokens)
    assert [t.name for t in header.tensors] == ["t"]
    assert len(quick) == 1 and (quick[0] is not None) == (not odd)  # the odd ones: walked
