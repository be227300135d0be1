"""Downloading a repo's model into the Hugging Face cache: resumable, cancellable, verified
against the repo's sha256 before it takes its name; against the Hub on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from qtapp.core.errors import QuantLensError
from qtapp.core.remote.download import DownloadCancelled, DownloadProgress, fetch_model
from qtapp.core.remote.listing import list_repo
from qtapp.core.remote.source import parse_source
from tests.hf_server import FakeHub, hf_hub, split_model

pytestmark = pytest.mark.timeout(240)
__all__ = ["hf_hub"]  # the fixture


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _names(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def test_a_split_set_lands_verified_in_the_hub_cache_and_the_models_page_finds_it(
    hf_hub: FakeHub, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qtapp.core.app import discovery

    parts = split_model(tiny_model, tmp_path / "src", "tiny-F16", 2)
    hf_hub.add_repo("org/tiny-GGUF", {f"F16/{p.name}": p for p in parts})
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    listing = list_repo(parse_source("org/tiny-GGUF", endpoint=hf_hub.url))
    seen: list[DownloadProgress] = []
    path = fetch_model(listing, listing.models[0], online=True, progress=seen.append)
    commit = hf_hub.repos["org/tiny-GGUF"].commit
    store = cache / "models--org--tiny-GGUF"
    assert path == store / "snapshots" / commit / "F16" / parts[0].name
    for p in parts:
        link = path.parent / p.name
        assert link.is_symlink() and link.resolve() == store / "blobs" / _sha(p)
        assert link.read_bytes() == p.read_bytes()
    assert (store / "refs" / "main").read_text() == commit
    assert not [n for n in _names(store) if n.endswith(".incomplete")]
    assert seen and seen[-1].done == seen[-1].total == sum(p.stat().st_size for p in parts)
    hits = discovery.scan(discovery.default_locations(tmp_path, {"HF_HUB_CACHE": str(cache)}))
    (hit,) = [h for h in hits.hits if h.source == discovery.HF]
    assert hit.shards == 2 and hit.error is None and hit.file_type == "F16"
    # a second fetch finds it and touches nothing
    before = len(hf_hub.requests)
    assert fetch_model(listing, listing.models[0], online=False) == path
    assert len(hf_hub.requests) == before


def test_a_dropped_download_resumes_and_verifies(
    hf_hub: FakeHub, gemma_path: Path, tmp_path: Path
) -> None:
    hf_hub.add_repo("google/gemma-GGUF", {gemma_path.name: gemma_path})
    drop = 25_000_000  # mid-body: after two of huggingface_hub's 10 MiB chunks
    hf_hub.fault("/resolve/", drop_after=drop, method="GET")
    hf_hub.fault("/resolve/", status=500, method="GET")  # and the first retry fails
    listing = list_repo(parse_source("google/gemma-GGUF", endpoint=hf_hub.url))
    path = fetch_model(listing, listing.models[0], online=True, cache_dir=tmp_path / "hub")
    ranges = hf_hub.ranges("/resolve/")
    assert ranges[0] is None and (ranges[-1] or "").startswith("bytes=")
    resumed = int((ranges[-1] or "").removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed <= drop  # resumed from what had been written, not from the start
    assert _sha(path) == hf_hub.repos["google/gemma-GGUF"].files[gemma_path.name].sha256
    assert hf_hub.sent(gemma_path.name) == gemma_path.stat().st_size + drop - resumed


def test_cancel_keeps_the_part_and_the_next_try_resumes_it(
    hf_hub: FakeHub, gemma_path: Path, tmp_path: Path
) -> None:
    hf_hub.add_repo("google/gemma-GGUF", {gemma_path.name: gemma_path})
    listing = list_repo(parse_source("google/gemma-GGUF", endpoint=hf_hub.url))
    cache = tmp_path / "hub"
    seen: list[DownloadProgress] = []
    with pytest.raises(DownloadCancelled, match="cancelled") as info:
        fetch_model(listing, listing.models[0], True, cache, progress=seen.append,
                    should_stop=lambda: bool(seen))  # fmt: skip
    assert "resume" in info.value.hint
    store = cache / "models--google--gemma-GGUF"
    (part,) = (store / "blobs").iterdir()
    kept = part.stat().st_size
    size = gemma_path.stat().st_size
    assert part.name.endswith(".incomplete") and 0 < kept < size
    assert not (store / "snapshots").exists()  # nothing under a final name
    seen.clear()
    path = fetch_model(listing, listing.models[0], True, cache, progress=seen.append)
    assert hf_hub.ranges("/resolve/")[-1] == f"bytes={kept}-"
    assert path.read_bytes() == gemma_path.read_bytes()
    assert seen[0].phase == "checking" and seen[-1].done == size


def test_a_file_that_does_not_match_its_sha256_never_takes_its_name(
    hf_hub: FakeHub, tiny_model: Path, tmp_path: Path
) -> None:
    repo = hf_hub.add_repo("org/tiny-GGUF", {"tiny-F16.gguf": tiny_model})
    repo.files["tiny-F16.gguf"].sha256 = "0" * 64  # the repo says one thing, serves another
    listing = list_repo(parse_source("org/tiny-GGUF", endpoint=hf_hub.url))
    cache = tmp_path / "hub"
    with pytest.raises(QuantLensError, match="does not match the repo's checksum") as info:
        fetch_model(listing, listing.models[0], True, cache)
    assert "again" in info.value.hint
    assert not [n for n in _names(cache) if "blobs/" in n or "snapshots/" in n]


def test_downloads_need_permission_and_say_what_is_wrong(
    hf_hub: FakeHub, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hf_hub.add_repo("org/gated-GGUF", {"tiny-F16.gguf": tiny_model}, gated=True)
    listing = list_repo(parse_source("org/gated-GGUF", endpoint=hf_hub.url))
    cache = tmp_path / "hub"
    before = len(hf_hub.requests)
    with pytest.raises(QuantLensError, match="needs the network, which is off"):
        fetch_model(listing, listing.models[0], False, cache)
    assert len(hf_hub.requests) == before and not cache.exists()
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored token either
    with pytest.raises(QuantLensError, match="is gated") as info:
        fetch_model(listing, listing.models[0], True, cache)
    assert "HF_TOKEN" in info.value.hint and "\n" not in str(info.value)
    assert not (cache / "models--org--gated-GGUF").exists()  # nothing partial left, no folder
    monkeypatch.setenv("HF_TOKEN", hf_hub.token)
    path = fetch_model(listing, listing.models[0], True, cache)
    assert os.path.getsize(path) == tiny_model.stat().st_size


def test_cli_fetch_prints_the_path(
    hf_hub: FakeHub,
    tiny_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from qtapp.__main__ import main

    hf_hub.add_repo("org/tiny-GGUF", {"tiny-F16.gguf": tiny_model})
    monkeypatch.setenv("HF_ENDPOINT", hf_hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["fetch", "hf://org/tiny-GGUF/tiny-F16.gguf", "--online"]) == 0
    out, err = capsys.readouterr()
    assert Path(out.strip()).read_bytes() == tiny_model.read_bytes() and "100%" in err
    assert main(["fetch", "hf://org/tiny-GGUF/other.gguf", "--online"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: org/tiny-GGUF has no GGUF model other.gguf")
    assert err.count("\n") == 1
