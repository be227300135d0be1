"""llama.cpp's C API: llama-cpp-python's ctypes bindings without its high-level package (see
:mod:`qtapp.core.light_import`). ``from qtapp.core.jobs.engine.llama_lib import llama_cpp``
gives the same names as ``llama_cpp`` for the C API."""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["llama_cpp"]

if TYPE_CHECKING:
    import llama_cpp.llama_cpp as llama_cpp
else:
    from qtapp.core.light_import import submodule

    llama_cpp = submodule("llama_cpp", "llama_cpp")
