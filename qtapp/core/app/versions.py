"""Versions for the About box and bug reports (no Qt here: the UI adds Qt's own)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import platform
import sys

from qtapp import __version__

log = logging.getLogger(__name__)


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def nvidia_driver_version() -> str | None:
    """The NVIDIA driver version through NVML, or None without a driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver is the common case, not an error
        return None
    try:
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception as exc:  # noqa: BLE001
        log.debug("NVML driver query failed: %s", exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def llama_cpp_description(use_cache: bool = True) -> str:
    """For example "llama-cpp-python 0.3.36, CPU build"; may run the ``llama_info`` job once."""
    try:
        from qtapp.core.hardware.llama_build import get_llama_build
    except ImportError:
        return package_version("llama-cpp-python")
    build = get_llama_build(use_cache=use_cache)
    pkg = package_version("llama-cpp-python")
    if build.error:
        return f"{pkg} (llama.cpp not loadable: {build.error})"
    backends = ", ".join(build.backends) or "CPU"
    if build.version and build.version != pkg:
        return f"{pkg} (llama.cpp {build.version}, {backends})"
    return f"llama-cpp-python {pkg}, {backends} build"


def base_versions() -> dict[str, str]:
    """What is known without starting anything: QuantLens, Python, the OS, pure packages."""
    return {
        "QuantLens": __version__,
        "Python": f"{platform.python_version()} ({sys.platform})",
        "System": f"{platform.system()} {platform.release()} {platform.machine()}".strip(),
        "gguf": package_version("gguf"),
        "pyqtgraph": package_version("pyqtgraph"),
    }
