"""Import one module of a package without running the package's ``__init__``.

Worker processes start per job, and a plan starts three of them (the no-alloc load, the dry
runs split over the cores) and has to answer in under 2 s. ``import llama_cpp`` runs the
package's ``__init__``, which imports the high-level ``Llama`` with numpy, jinja2 and the chat
formats: 0.19 s of a worker's start on this project's 2-core machine, against 0.02 s for the
ctypes bindings alone; ``import gguf`` pulls in numpy for the type table in ``gguf.constants``
(0.18 s against 2 ms). Here the wanted module is imported under a stand-in for its package that
is dropped right after: a later plain ``import llama_cpp`` or ``import gguf`` runs the real
package, which finds this module already loaded and reuses it (one library load, the same
enum classes).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType


def submodule(package: str, name: str) -> ModuleType:
    """``package.name``, importing as little of ``package`` as possible."""
    full = f"{package}.{name}"
    if package in sys.modules or full in sys.modules:
        return importlib.import_module(full)
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise ImportError(f"{package} is not installed")
    sys.modules[package] = importlib.util.module_from_spec(spec)  # not executed
    try:
        return importlib.import_module(full)
    finally:
        del sys.modules[package]
