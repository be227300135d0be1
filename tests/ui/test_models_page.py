"""The Models page scans fake stores in the background, filters, opens, and adds folders."""

from __future__ import annotations

import json
from pathlib import Path

from qtapp.core.app.settings import Settings
from qtapp.ui.common.context import AppContext
from qtapp.ui.models.page import PATH_ROLE, Page, human_size
from tests.core.test_discovery import write_gguf


def _stores(root: Path) -> None:
    write_gguf(root / ".lmstudio/models/pub/Repo-GGUF/repo-Q4_K_M.gguf", "qwen2")
    om = root / ".ollama/models"
    write_gguf(om / f"blobs/sha256-{'e' * 64}", "llama")
    manifest = om / "manifests/registry.ollama.ai/library/llama3.2/1b"
    manifest.parent.mkdir(parents=True)
    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:" + "e" * 64}
    manifest.write_text(json.dumps({"layers": [layer]}))


def _page(qtbot, root: Path) -> Page:  # type: ignore[no-untyped-def]
    page = Page(AppContext())
    qtbot.addWidget(page)
    page.scan_home = root
    page.scan_env = {}
    return page


def test_scan_fills_table_and_opens(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _stores(tmp_path / "home")
    page = _page(qtbot, tmp_path / "home")
    page.show()  # the first show starts the scan
    qtbot.waitUntil(lambda: page.last_result is not None, timeout=10_000)
    assert page.model.rowCount() == 2
    names = {page.model.item(r, 0).text() for r in range(2)}
    assert names == {"pub/Repo-GGUF/repo-Q4_K_M.gguf", "llama3.2:1b"}
    assert "Found 2 models" in page.status.text()
    page.filter.setText("ollama")
    assert page.proxy.rowCount() == 1
    index = page.proxy.index(0, 0)
    assert index.data() == "llama3.2:1b"
    with qtbot.waitSignal(page.ctx.navigate) as nav:
        page.table.doubleClicked.emit(index)
    assert nav.args == ["fit"]
    assert page.ctx.model_path == Path(index.data(PATH_ROLE))
    assert page.ctx.model_path.name == "sha256-" + "e" * 64
    page.shutdown()


def test_add_folder_saves_and_rescans(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page = _page(qtbot, tmp_path / "emptyhome")
    page.rescan()
    qtbot.waitUntil(lambda: page.last_result is not None, timeout=10_000)
    assert page.model.rowCount() == 0 and "Add a folder" in page.status.text()
    mine = tmp_path / "mine"
    write_gguf(mine / "x-F16.gguf", ftype=1)
    page.last_result = None
    page.add_folder(mine)
    qtbot.waitUntil(lambda: page.last_result is not None, timeout=10_000)
    assert Settings.load().extra_model_dirs == [str(mine)]
    assert page.model.rowCount() == 1 and page.model.item(0, 3).text() == "F16"
    assert "16-bit floats" in page.model.item(0, 3).toolTip()  # the glossary explains it
    page.shutdown()


def test_human_size() -> None:
    assert human_size(512) == "512 B"
    assert human_size(3 * 2**30 + 2**29) == "3.5 GiB"
