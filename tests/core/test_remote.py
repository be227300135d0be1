"""Planning a Hugging Face repo's GGUF files from their headers: a real HTTP server on
127.0.0.1 (tests/hf_server.py) stands in for the Hub, serving real GGUF files (generated tiny
models, the real Gemma 3 270M) with the headers huggingface_hub expects, and faults."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

import pytest

from qtapp.core.errors import QuantLensError
from qtapp.core.fit.devices import parse_gpu_spec
from qtapp.core.fit.plan import PlanInputs
from qtapp.core.fit.sources import read_plan_sources
from qtapp.core.remote.fit import plan_repo
from qtapp.core.remote.headers import header_folder
from qtapp.core.remote.listing import list_repo
from qtapp.core.remote.source import parse_source
from tests.hf_server import FakeHub, hf_hub, split_model

pytestmark = pytest.mark.timeout(240)
__all__ = ["hf_hub"]  # the fixture


def _inputs(path: Path) -> PlanInputs:
    s = read_plan_sources(path, warm_up=False)
    return PlanInputs(s.model, gpus=parse_gpu_spec("2GiB"), recipes=s.recipes, quality=s.quality)


@pytest.fixture(scope="module")
def repo_files(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Path]:
    """A tiny F16 model, the same as a split set of two, an F32 one, and bad files."""
    from qtapp.testing.tiny import TinySpec, write_tiny_llama

    d = tmp_path_factory.mktemp("repo")
    parts = split_model(tiny_model, d / "split", "tiny-F16-split", 2)
    f32 = write_tiny_llama(d / "tiny-F32.gguf", TinySpec(dtype="f32"))
    data = tiny_model.read_bytes()
    (d / "cut.gguf").write_bytes(data[:3000])  # the header stops mid-vocabulary
    hostile = bytearray(data[:4096])
    hostile[16:24] = struct.pack("<Q", 2**62)  # metadata key count
    (d / "hostile.gguf").write_bytes(bytes(hostile))
    (d / "page.gguf").write_bytes(b"<html>not a model</html>\n" * 40)
    return {
        "tiny-F16.gguf": tiny_model,
        f"F16/{parts[0].name}": parts[0],
        f"F16/{parts[1].name}": parts[1],
        "tiny-F32.gguf": f32,
        "mmproj-tiny-F16.gguf": tiny_model,
        "README.md": d / "page.gguf",
        "bad/cut.gguf": d / "cut.gguf",
        "bad/hostile.gguf": d / "hostile.gguf",
        "bad/page.gguf": d / "page.gguf",
    }


def test_sources_parse_to_repos_and_files() -> None:
    ref = parse_source("https://hf.example/org/m-GGUF/resolve/v2/Q4/m-Q4_K_M-00001-of-00002.gguf")
    assert (ref.repo_id, ref.revision, ref.path, ref.endpoint) == (
        "org/m-GGUF", "v2", "Q4/m-Q4_K_M-00001-of-00002.gguf", "https://hf.example"
    )  # fmt: skip
    assert parse_source("hf://org/m@dev").revision == "dev"
    assert parse_source("org/m/file.gguf").path == "file.gguf"
    for bad in ("org", "hf://org/m/README.md", "https://example.com/x", "../a/b"):
        with pytest.raises(QuantLensError) as info:
            parse_source(bad)
        assert info.value.hint


def test_a_repo_lists_models_with_split_sets_as_one(hf_hub: FakeHub, repo_files) -> None:  # noqa: ANN001
    hf_hub.add_repo("org/tiny-GGUF", repo_files)
    listing = list_repo(parse_source("org/tiny-GGUF", endpoint=hf_hub.url))
    names = {m.name: m for m in listing.models}
    split = names["F16/tiny-F16-split.gguf"]
    assert split.shards == 2 and [f.path for f in split.files] == [
        "F16/tiny-F16-split-00001-of-00002.gguf",
        "F16/tiny-F16-split-00002-of-00002.gguf",
    ]
    assert split.size == sum(repo_files[f.path].stat().st_size for f in split.files)
    assert all(f.sha256 and len(f.sha256) == 64 for m in listing.models for f in m.files)
    assert "README.md" not in names and listing.skipped == ["mmproj-tiny-F16.gguf"]
    assert listing.commit == hf_hub.repos["org/tiny-GGUF"].commit


def test_every_file_is_planned_from_its_header_and_bad_files_say_why(
    hf_hub: FakeHub,
    repo_files,  # noqa: ANN001
) -> None:
    hf_hub.add_repo("org/tiny-GGUF", repo_files)
    listing = list_repo(parse_source("org/tiny-GGUF", endpoint=hf_hub.url))
    plan = plan_repo(listing, _inputs)
    by = {f.model.name: f for f in plan.files}
    assert by["tiny-F16.gguf"].verdict in ("fits", "partial")
    assert by["F16/tiny-F16-split.gguf"].file_type == "F16"
    # the split set plans as the single file it was made from (every shard's header read)
    single, split = by["tiny-F16.gguf"].current, by["F16/tiny-F16-split.gguf"].current
    assert single is not None and split is not None
    assert split.weights_bytes == single.weights_bytes
    assert hf_hub.ranges("tiny-F16-split-00002-of-00002.gguf")  # the second shard was read
    assert "ends inside" in (by["bad/cut.gguf"].error or "")
    assert "implausible" in (by["bad/hostile.gguf"].error or "")
    assert "not a GGUF file" in (by["bad/page.gguf"].error or "")
    folder = header_folder(listing)
    assert not (folder / "bad").exists() or not any((folder / "bad").iterdir())
    # recommended: the better type that fits (F32 never: it adds no quality over F16)
    assert plan.recommended in ("tiny-F16.gguf", "F16/tiny-F16-split.gguf")
    assert plan.recommended in plan.why
    # a second plan of the same commit reads no header again
    before = len(hf_hub.requests)
    plan_repo(listing, _inputs)
    assert not [r for r in hf_hub.requests[before:] if "/resolve/" in r[1] and "bad/" not in r[1]]


def test_gemma_plans_from_under_5_percent_of_its_bytes_exactly_as_on_disk(
    hf_hub: FakeHub,
    gemma_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from qtapp.__main__ import main

    name = gemma_path.name
    hf_hub.add_repo("google/gemma-3-270m-GGUF", {name: gemma_path})
    monkeypatch.setenv("HF_ENDPOINT", hf_hub.url)
    flags = ["--gpus", "1GiB", "--ram", "64GiB", "--ctx", "8192", "--fast", "--json"]
    assert main(["plan", str(gemma_path), *flags]) == 0
    local = json.loads(capsys.readouterr().out)
    assert main(["plan", f"hf://google/gemma-3-270m-GGUF/{name}", "--online", *flags]) == 0
    remote = json.loads(capsys.readouterr().out)
    size = gemma_path.stat().st_size
    sent = hf_hub.sent(name)
    assert 0 < sent < 0.05 * size, f"{sent:,} of {size:,} bytes read"
    assert remote["header_bytes_read"] == sent
    (row,) = remote["files"]
    assert row["download_bytes"] == size and row["file_type"] == "Q4_K_M"
    plan = row["plan"]
    assert plan["model"].pop("path") != local["model"].pop("path")
    assert local.pop("plan_checks") == []  # the CLI adds past runs' checks beside the plan
    assert plan == local  # fingerprint, every row, every device, the recommendation
    print(f"gemma: {sent:,} of {size:,} bytes ({sent / size:.2%})")


def test_429_500_and_a_dropped_header_read_are_retried(hf_hub: FakeHub, repo_files) -> None:  # noqa: ANN001
    hf_hub.add_repo("org/tiny-GGUF", {"tiny-F16.gguf": repo_files["tiny-F16.gguf"]})
    hf_hub.fault("/tree/", status=500)
    hf_hub.fault("/resolve/", status=429)
    hf_hub.fault("/resolve/", drop_after=1000)
    listing = list_repo(parse_source("org/tiny-GGUF", endpoint=hf_hub.url))
    plan = plan_repo(listing, _inputs)
    assert plan.files[0].verdict in ("fits", "partial") and plan.recommended == "tiny-F16.gguf"
    assert all(f.hits == 1 for f in hf_hub.faults)


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_bad_repos_fail_in_one_line_that_says_what_to_do(
    hf_hub: FakeHub,
    repo_files,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hf_hub.add_repo("org/gated-GGUF", {"tiny-F16.gguf": repo_files["tiny-F16.gguf"]}, gated=True)
    hf_hub.add_repo("org/safetensors-only", {"README.md": repo_files["README.md"]})
    cases = {
        "org/nope": "no model repo org/nope",
        "org/gated-GGUF": "is gated",
        "org/safetensors-only": "holds no GGUF model",
    }
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(hf_hub_home := Path(str(repo_files["README.md"])).parent))
    del hf_hub_home
    for repo, words in cases.items():
        with pytest.raises(QuantLensError, match=words) as info:
            listing = list_repo(parse_source(repo, endpoint=hf_hub.url))
            plan_repo(listing, _inputs)
        assert info.value.hint and "\n" not in str(info.value)
    gated = list_repo(parse_source("org/gated-GGUF", endpoint=hf_hub.url))
    assert gated.gated and not header_folder(gated).exists()  # nothing partial left
    plan = plan_repo(gated, _inputs, token=hf_hub.token)  # with a token it reads
    assert plan.recommended == "tiny-F16.gguf"
    with pytest.raises(QuantLensError, match="Cannot reach") as info:
        list_repo(parse_source("org/tiny-GGUF", endpoint=_closed_port()))
    assert "connection" in info.value.hint


def test_cli_plan_refuses_without_online(
    hf_hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from qtapp.__main__ import main

    monkeypatch.setenv("HF_ENDPOINT", hf_hub.url)
    assert main(["plan", "hf://org/tiny-GGUF", "--fast"]) == 2
    assert main(["fetch", "hf://org/tiny-GGUF/tiny-F16.gguf"]) == 1
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 2 and hf_hub.requests == []
    assert lines[0].startswith("error: Planning hf://org/tiny-GGUF needs the network")
    assert lines[1].startswith("error: Downloading hf://org/tiny-GGUF/tiny-F16.gguf needs")
    assert all("Add --online" in line for line in lines)


def test_cli_refuses_a_named_bad_file_in_one_line_and_downloads_none(
    hf_hub: FakeHub,
    repo_files,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from qtapp.__main__ import main

    hf_hub.add_repo("org/tiny-GGUF", repo_files)
    monkeypatch.setenv("HF_ENDPOINT", hf_hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache := tmp_path / "hub"))
    cases = {
        "bad/cut.gguf": "ends inside",
        "bad/hostile.gguf": "implausible",
        "bad/page.gguf": "not a GGUF file",
    }
    for name, words in cases.items():
        for argv in (["plan", f"hf://org/tiny-GGUF/{name}", "--online", "--fast", "--json"],
                     ["fetch", f"hf://org/tiny-GGUF/{name}", "--online"]):  # fmt: skip
            assert main(argv) != 0, argv
            out, err = capsys.readouterr()
            assert out == "" and err.count("\n") == 1, (argv, err)
            assert err.startswith(f"error: org/tiny-GGUF/{name} cannot be read as a GGUF model")
            assert words in err and "choose another file" in err
    assert not cache.exists()  # no byte of a bad file went into the Hugging Face cache
    # the header copies of bad files are not kept either
    remote = Path(os.environ["QUANTLENS_HOME"]) / "cache" / "remote" / "org--tiny-GGUF"
    assert not [p for p in remote.rglob("*") if p.is_file()]


def test_header_copies_keep_one_commit_per_repo_and_a_bounded_number_of_repos(
    hf_hub: FakeHub,
    repo_files,  # noqa: ANN001
) -> None:
    from qtapp.core.remote.headers import prune_headers

    tiny = {"tiny-F16.gguf": repo_files["tiny-F16.gguf"]}
    hf_hub.add_repo("org/a-GGUF", tiny, commit="a" * 40)
    hf_hub.add_repo("org/b-GGUF", tiny, commit="b" * 40)
    old = list_repo(parse_source("org/a-GGUF", endpoint=hf_hub.url))
    plan_repo(old, _inputs)
    assert (header_folder(old) / "tiny-F16.gguf").is_file()
    hf_hub.repos["org/a-GGUF"].commit = "c" * 40  # the repo moved on
    new = list_repo(parse_source("org/a-GGUF", endpoint=hf_hub.url))
    assert new.commit == "c" * 40
    plan = plan_repo(new, _inputs)
    assert plan.recommended == "tiny-F16.gguf"
    assert (header_folder(new) / "tiny-F16.gguf").is_file()
    assert not header_folder(old).exists()  # the older commit's copies went
    assert [p.name for p in header_folder(new).parent.iterdir()] == ["c" * 40]
    other = list_repo(parse_source("org/b-GGUF", endpoint=hf_hub.url))
    plan_repo(other, _inputs)
    # of all repos, only the most recently planned ones are kept
    assert prune_headers(other, keep_repos=1) == [header_folder(new).parent]
    assert (header_folder(other) / "tiny-F16.gguf").is_file()
    assert not header_folder(new).parent.exists()


def test_tree_entries_that_cannot_name_a_local_file_are_refused() -> None:
    """The tree comes from a server (any HF_ENDPOINT): its paths and digests become local
    file names, so a traversal or a forged digest never reaches the disk."""
    from qtapp.core.remote.listing import RemoteFile, is_safe_entry

    sha, blob = "a" * 64, "b" * 40
    assert is_safe_entry(RemoteFile("Q4_K_M/model-Q4_K_M.gguf", 10, sha, blob))
    assert is_safe_entry(RemoteFile("small.gguf", 10, None, blob))
    for path in ("../evil.gguf", "a/../../evil.gguf", "/etc/evil.gguf", "a//b.gguf",
                 "a\\b.gguf", "./x.gguf", "x\n.gguf", ""):  # fmt: skip
        assert not is_safe_entry(RemoteFile(path, 10, sha, blob)), path
    assert not is_safe_entry(RemoteFile("m.gguf", 10, "../../" + "a" * 58, blob))
    assert not is_safe_entry(RemoteFile("m.gguf", 10, sha, "../x"))
