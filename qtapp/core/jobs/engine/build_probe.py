"""Inside the worker child: ask the imported llama.cpp about itself (job kind ``llama_info``)."""

from __future__ import annotations

import ctypes
import logging
from typing import Any

from qtapp.core.hardware.llama_build import _DEVICE_TYPES, LlamaBuild, llama_cpp_python_version

log = logging.getLogger(__name__)

_installed_version = llama_cpp_python_version


def _backend_devices(lib: Any) -> list[dict[str, str]]:
    """The ggml device registry, through ctypes (llama-cpp-python does not wrap it)."""
    try:
        count_fn = lib.ggml_backend_dev_count
        get_fn = lib.ggml_backend_dev_get
        name_fn = lib.ggml_backend_dev_name
        desc_fn = lib.ggml_backend_dev_description
        type_fn = lib.ggml_backend_dev_type
    except AttributeError:
        return []
    count_fn.restype = ctypes.c_size_t
    count_fn.argtypes = []
    get_fn.restype = ctypes.c_void_p
    get_fn.argtypes = [ctypes.c_size_t]
    for fn in (name_fn, desc_fn):
        fn.restype = ctypes.c_char_p
        fn.argtypes = [ctypes.c_void_p]
    type_fn.restype = ctypes.c_int
    type_fn.argtypes = [ctypes.c_void_p]
    devices = []
    for i in range(int(count_fn())):
        dev = get_fn(i)
        if not dev:
            continue
        devices.append(
            {
                "name": (name_fn(dev) or b"").decode("utf-8", "replace"),
                "description": (desc_fn(dev) or b"").decode("utf-8", "replace"),
                "type": _DEVICE_TYPES.get(int(type_fn(dev)), "unknown"),
            }
        )
    return devices


def probe_in_process() -> dict[str, Any]:
    """Ask the imported llama.cpp about itself. Call only inside the worker child."""
    try:
        import llama_cpp
    except Exception as exc:  # noqa: BLE001 - a broken install is reported, not raised
        return LlamaBuild(
            version=_installed_version(),
            supports_gpu_offload=None,
            error=f"llama_cpp could not be imported: {type(exc).__name__}: {exc}",
        ).to_dict()
    info: dict[str, Any] = {
        "version": getattr(llama_cpp, "__version__", None) or _installed_version(),
        "supports_gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        "max_devices": int(llama_cpp.llama_max_devices()),
        "devices": [],
        "error": "",
    }
    try:
        info["devices"] = _backend_devices(llama_cpp.llama_cpp._lib)
    except Exception as exc:  # noqa: BLE001 - devices are a bonus
        log.warning("Listing ggml backend devices failed: %s", exc)
    return info
