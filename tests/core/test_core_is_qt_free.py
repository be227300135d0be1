"""``qtapp.core`` must import with Qt absent: the domain is plain Python (DESIGN.md, P1)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys

    BLOCKED = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "pyqtgraph", "qtapp.ui")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"{name} is blocked: qtapp.core must not import Qt")
            return None

    sys.meta_path.insert(0, Blocker())
    import qtapp.core

    names = sorted(
        m.name for m in pkgutil.walk_packages(qtapp.core.__path__, "qtapp.core.")
    )
    failed = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph"))
    print("MODULES", len(names))
    for line in failed:
        print("FAILED", line)
    for name in leaked:
        print("LEAKED", name)
    sys.exit(1 if failed or leaked else 0)
    """
)


def test_every_core_module_imports_without_qt() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    count = int(out.split("MODULES", 1)[1].split()[0])
    assert count >= 10, out  # the walk really found the package's modules
