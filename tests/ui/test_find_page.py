"""The Find a model page against the Hub on 127.0.0.1: nothing read while downloads are off;
a table with a badge per file and the recommended one; a verified download the Models page
finds; cancel; a bad repo in one line. Reachable from the Welcome and Models pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from qtapp.core.app.settings import Settings
from qtapp.ui.common.context import AppContext
from qtapp.ui.find.page import Page
from tests.hf_server import FakeHub, hf_hub, split_model

pytestmark = pytest.mark.timeout(180)
__all__ = ["hf_hub"]  # the fixture


def _allow_downloads() -> None:
    settings = Settings.load()
    settings.network_allowed = True
    settings.save()


@pytest.fixture
def page(qtbot, hf_hub: FakeHub, tiny_model: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    from qtapp.testing.tiny import TinySpec, write_tiny_llama

    parts = split_model(tiny_model, tmp_path / "src", "tiny-F16", 2)
    f32 = write_tiny_llama(tmp_path / "src" / "tiny-F32.gguf", TinySpec(dtype="f32"))
    (tmp_path / "page.gguf").write_text("<html>not a model</html>\n" * 10)
    hf_hub.add_repo("org/tiny-GGUF", {
        "tiny-F32.gguf": f32,
        **{f"F16/{p.name}": p for p in parts},
        "broken.gguf": tmp_path / "page.gguf",
    })  # fmt: skip
    p = Page(AppContext())
    qtbot.addWidget(p)
    p.endpoint = hf_hub.url
    p.cache_dir = tmp_path / "hub"
    p.gpus_box.setText("1GiB")
    p.resize(1100, 600)
    yield p
    p.shutdown()


def test_nothing_is_read_while_downloads_are_off(page: Page, hf_hub: FakeHub) -> None:
    page.repo.setText("org/tiny-GGUF")
    page.find_button.click()
    assert "Downloads are off" in page.status.text() and page.settings_button.isVisibleTo(page)
    assert hf_hub.requests == [] and page.table.rowCount() == 0


def test_a_repo_becomes_a_table_with_badges_and_downloads_verified(
    qtbot,  # noqa: ANN001
    page: Page,
    hf_hub: FakeHub,
    tmp_path: Path,
) -> None:
    _allow_downloads()
    page.repo.setText("org/tiny-GGUF")
    page.find_button.click()
    qtbot.waitUntil(lambda: page.plan is not None, timeout=60_000)
    table = page.table
    rows = {table.item(r, 0).text(): table.item(r, 3).text() for r in range(table.rowCount())}
    assert set(rows) == {"★ F16/tiny-F16.gguf  (2 parts)", "tiny-F32.gguf", "broken.gguf"}
    assert rows["broken.gguf"] == "⚠ Cannot plan"
    assert "not a GGUF file" in table.item(2, 7).text() + table.item(1, 7).text() + \
        table.item(0, 7).text()  # fmt: skip
    assert rows["tiny-F32.gguf"].endswith(
        ("Fits on GPU", "Partial offload", "Layers on CPU", "Does not fit")
    )
    assert page.plan is not None and page.plan.recommended == "F16/tiny-F16.gguf"
    assert page.why.text().startswith("<b>Recommended: F16/tiny-F16.gguf</b> — No file fits")
    (rec,) = [r for r in range(table.rowCount()) if table.item(r, 0).text().startswith("★")]
    tip = table.item(rec, 3).toolTip()  # per device, as the Fit page breaks it down
    assert "weights" in tip and "KV cache" in tip and "compute" in tip and "usable" in tip
    # as the CLI: KV cache and compute are llama.cpp's own, from a no-alloc load of each header
    planned = [f for f in page.plan.files if f.inputs is not None]
    assert planned and all(f.inputs.exact.get(f.inputs.settings) for f in planned)
    assert "llama.cpp's own sizes" in page.status.text()
    assert table.selected() is not None and page.download_button.isEnabled()
    page.download_button.click()
    qtbot.waitUntil(lambda: page.downloaded is not None, timeout=60_000)
    assert page.downloaded is not None and page.downloaded.name == "tiny-F16-00001-of-00002.gguf"
    assert "verified" in page.status.text() and page.open_button.isVisibleTo(page)
    assert (page.downloaded.parent / "tiny-F16-00002-of-00002.gguf").is_file()
    with qtbot.waitSignal(page.ctx.navigate) as nav:
        page.open_button.click()
    assert nav.args == ["fit"] and page.ctx.model_path == page.downloaded


def test_a_bad_repo_is_one_line_and_leaves_an_empty_table(qtbot, page: Page) -> None:  # noqa: ANN001
    _allow_downloads()
    page.repo.setText("org/nope")
    page.find_button.click()
    qtbot.waitUntil(lambda: page.find_button.isEnabled(), timeout=30_000)
    assert page.status.text().startswith("There is no model repo org/nope")
    assert "\n" not in page.status.text() and page.table.rowCount() == 0
    page.repo.setText("not a repo")
    page.find_button.click()
    assert "does not name a Hugging Face repo" in page.status.text()


def test_welcome_and_models_lead_to_the_find_page(qtbot) -> None:  # noqa: ANN001
    from qtapp.ui.models.page import Page as ModelsPage
    from qtapp.ui.welcome.page import Page as WelcomePage

    ctx = AppContext()
    welcome, models = WelcomePage(ctx), ModelsPage(ctx)
    qtbot.addWidget(welcome)
    qtbot.addWidget(models)
    for button in (welcome.hub_button, models.hub_button):
        with qtbot.waitSignal(ctx.navigate) as nav:
            button.click()
        assert nav.args == ["find"]


def test_cancel_stops_a_download_and_keeps_no_final_name(
    qtbot,  # noqa: ANN001
    hf_hub: FakeHub,
    gemma_path: Path,
    tmp_path: Path,
) -> None:
    _allow_downloads()
    hf_hub.add_repo("google/gemma-GGUF", {gemma_path.name: gemma_path})
    page = Page(AppContext())
    qtbot.addWidget(page)
    page.endpoint, page.cache_dir = hf_hub.url, tmp_path / "hub"
    page.gpus_box.setText("24GiB")
    page.repo.setText("google/gemma-GGUF")
    page.find_button.click()
    qtbot.waitUntil(lambda: page.plan is not None, timeout=60_000)
    assert page.table.item(0, 3).text() == "✔ Fits on GPU"
    page.download_button.click()
    name = f"{gemma_path.name}:"  # the progress line: "NAME: 10.0 of 241.4 MiB, ..."
    qtbot.waitUntil(lambda: page.status.text().startswith(name), timeout=60_000)
    page.cancel_button.click()
    qtbot.waitUntil(lambda: page.find_button.isEnabled(), timeout=60_000)
    assert "was cancelled" in page.status.text() and page.downloaded is None
    store = tmp_path / "hub" / "models--google--gemma-GGUF"
    assert not (store / "snapshots").exists()
    assert all(p.name.endswith(".incomplete") for p in (store / "blobs").iterdir())
    page.shutdown()


def test_page_shortcuts_follow_the_navigation_and_the_readme_lists_them(qtbot) -> None:  # noqa: ANN001
    """Find a model is the fourth page: Ctrl+4 opens it, and the README's key line names the
    pages in the order Ctrl+1 ... Ctrl+9 open them."""
    import re

    from PySide6.QtGui import QKeySequence, QShortcut

    from qtapp.ui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    titles = [window.nav.item(i).text() for i in range(window.nav.count())]
    keys = {s.key().toString(): s for s in window.findChildren(QShortcut)}
    for n, title in enumerate(titles[:9], start=1):
        keys[QKeySequence(f"Ctrl+{n}").toString()].activated.emit()
        assert window.nav.currentItem().text() == title
    assert window.current_page_key() == "settings"
    keys["Ctrl+4"].activated.emit()
    assert window.current_page_key() == "find"
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    m = re.search(r"\*\*Ctrl\+1\*\* to \*\*Ctrl\+9\*\* open the pages[^(]*\(([^)]*)\)", readme)
    assert m is not None, "README: the line listing Ctrl+1 ... Ctrl+9"
    assert [t.strip() for t in " ".join(m[1].split()).split(",")] == titles[:9]
    window.close()
