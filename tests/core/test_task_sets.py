"""Standard task files: never fetched without permission; fetched whole and checked, or not at all.

A real HTTP server on 127.0.0.1 (``http_server`` in conftest) stands in for the Hugging Face
and GitHub hosts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qtapp.core.errors import QuantLensError
from qtapp.core.evaluate import task_sets
from qtapp.core.evaluate.task_sets import STANDARD_SETS, TaskSet, fetch_task_set
from tests.conftest import WINO

pytestmark = pytest.mark.timeout(120)


def test_nothing_is_fetched_while_the_network_is_off(tmp_path: Path, http_server) -> None:  # noqa: ANN001
    endpoint, hits = http_server
    with pytest.raises(QuantLensError, match="needs the network, which is off"):
        fetch_task_set("winogrande", tmp_path / "tasks", online=False, endpoint=endpoint)
    assert hits == [] and not (tmp_path / "tasks").exists()


def test_a_set_is_fetched_checked_and_reused(tmp_path: Path, http_server) -> None:  # noqa: ANN001
    endpoint, hits = http_server
    seen: list[float] = []
    dest = tmp_path / "dest"
    path = fetch_task_set(
        "winogrande",
        dest,
        online=True,
        endpoint=endpoint,
        progress=lambda f, _m: seen.append(f),
    )
    assert path == dest / "winogrande-debiased-eval.csv" and path.read_text() == WINO * 3
    assert not path.with_name(path.name + ".part").exists() and seen and seen[-1] == 1.0
    assert len(hits) == 1 and hits[0].endswith("/resolve/main/winogrande-debiased-eval.csv")
    assert fetch_task_set("winogrande", dest, online=False) == path  # kept: no network
    assert len(hits) == 1


def test_a_page_that_is_not_a_task_file_never_takes_the_name(
    tmp_path: Path,
    http_server,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, _hits = http_server
    dest = tmp_path / "dest"
    fake = TaskSet("hellaswag", "hellaswag", "HellaSwag", "hellaswag_val_full.txt",
                   url=f"{endpoint}/not-tasks.txt")  # fmt: skip
    monkeypatch.setitem(STANDARD_SETS, "hellaswag", fake)
    with pytest.raises(QuantLensError, match="did not give a task file"):
        fetch_task_set("hellaswag", dest, online=True)
    assert not dest.exists() or list(dest.iterdir()) == []
    monkeypatch.setitem(STANDARD_SETS, "hellaswag", TaskSet(
        "hellaswag", "hellaswag", "HellaSwag", "hellaswag_val_full.txt", url=f"{endpoint}/gone.txt"
    ))  # fmt: skip
    with pytest.raises(QuantLensError, match="Could not download"):
        fetch_task_set("hellaswag", dest, online=True)
    assert not (dest / "hellaswag_val_full.txt").exists()
    good = TaskSet("hellaswag", "hellaswag", "HellaSwag", "hellaswag_val_full.txt",
                   url=f"{endpoint}/hellaswag_val_full.txt")  # fmt: skip
    monkeypatch.setitem(STANDARD_SETS, "hellaswag", good)
    assert fetch_task_set("hellaswag", dest, online=True).stat().st_size > 0


def test_cli_refuses_without_online(capsys: pytest.CaptureFixture[str]) -> None:
    from qtapp.__main__ import main

    assert main(["get-tasks", "hellaswag"]) == 1
    assert "Allow downloads" in capsys.readouterr().err
    assert "llama.cpp" in task_sets.SOURCES_NOTE
