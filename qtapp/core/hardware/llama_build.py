"""Which llama.cpp build sits behind llama-cpp-python, and can it offload to a GPU?

:func:`qtapp.core.jobs.engine.build_probe.probe_in_process` asks llama.cpp inside the worker
child (job kind ``llama_info``). The parent calls :func:`get_llama_build`, which runs that job
once and caches the answer on disk, keyed by the installed package's version and library files,
so a reinstall (for instance a CUDA build) is noticed on the next start.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: the llama-cpp-python version QuantLens is tested with
LLAMA_CPP_VERSION = "0.3.36"
#: the exact command that replaces a CPU-only build with a CUDA one (it compiles llama.cpp)
CUDA_INSTALL_COMMAND = (
    'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir '
    f"llama-cpp-python=={LLAMA_CPP_VERSION}"
)
_DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}
_CACHE_NAME = "llama_build.json"


@dataclass(frozen=True)
class BackendDevice:
    """One device that llama.cpp's ggml registry lists (``CUDA0``, ``CPU``...)."""

    name: str
    description: str
    type: str  # "cpu" | "gpu" | "igpu" | "accel" | "meta" | "unknown"


@dataclass(frozen=True)
class LlamaBuild:
    """The llama.cpp build as llama-cpp-python reports it. ``error`` says why it is unknown."""

    version: str | None
    supports_gpu_offload: bool | None
    system_info: str = ""
    devices: tuple[BackendDevice, ...] = ()
    max_devices: int | None = None
    error: str = ""

    @property
    def gpu_devices(self) -> tuple[BackendDevice, ...]:
        return tuple(d for d in self.devices if d.type in ("gpu", "igpu"))

    @property
    def backends(self) -> list[str]:
        """Backend names from the device names, e.g. ``["CUDA", "CPU"]``."""
        names: list[str] = []
        for device in self.devices:
            base = device.name.rstrip("0123456789") or device.name
            if base not in names:
                names.append(base)
        return names

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["devices"] = [asdict(d) for d in self.devices]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LlamaBuild:
        devices = tuple(
            BackendDevice(
                name=str(d.get("name", "")),
                description=str(d.get("description", "")),
                type=str(d.get("type", "unknown")),
            )
            for d in data.get("devices") or ()
        )
        offload = data.get("supports_gpu_offload")
        return cls(
            version=data.get("version"),
            supports_gpu_offload=None if offload is None else bool(offload),
            system_info=str(data.get("system_info") or ""),
            devices=devices,
            max_devices=data.get("max_devices"),
            error=str(data.get("error") or ""),
        )


# -- parent side -------------------------------------------------------------------------------
@functools.cache
def llama_cpp_python_version() -> str | None:
    """The installed llama-cpp-python version, read once per process without loading the
    library (reading package metadata costs milliseconds: never on every store write)."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return None


_installed_version = llama_cpp_python_version


def cache_key() -> str | None:
    """Changes when llama-cpp-python is reinstalled: its version and its library files' mtimes.

    Found without importing llama_cpp (which takes a second and loads llama.cpp).
    """
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.origin:
        return None
    lib_dir = Path(spec.origin).parent / "lib"
    try:
        stamps = sorted(
            f"{p.name}:{p.stat().st_mtime_ns}:{p.stat().st_size}" for p in lib_dir.iterdir()
        )
    except OSError:
        stamps = []
    return json.dumps([_installed_version(), spec.origin, stamps])


def _cache_file() -> Path:
    from qtapp.core.app.paths import app_paths

    return app_paths().cache / _CACHE_NAME


def cached_build() -> LlamaBuild | None:
    """The cached build info if llama-cpp-python has not changed since it was probed."""
    try:
        data = json.loads(_cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != cache_key():
        return None
    try:
        return LlamaBuild.from_dict(data["build"])
    except (KeyError, TypeError, AttributeError):
        return None


def store_build(build: LlamaBuild) -> None:
    """Cache a successful probe; failures are not cached, so the next start tries again."""
    if build.error:
        return
    path = _cache_file()
    try:
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps({"key": cache_key(), "build": build.to_dict()}), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.warning("Could not cache the llama.cpp build info in %s: %s", path, exc)


def build_from_job_result(result: dict[str, Any]) -> LlamaBuild:
    build = LlamaBuild.from_dict(result)
    store_build(build)
    return build


def get_llama_build(use_cache: bool = True) -> LlamaBuild:
    """The build info, from the cache or by running the ``llama_info`` job. Never raises."""
    if use_cache:
        cached = cached_build()
        if cached is not None:
            return cached
    from qtapp.core.jobs.job import run_job

    try:
        return build_from_job_result(run_job("llama_info"))
    except Exception as exc:  # noqa: BLE001 - shown as "unknown build", with the reason
        log.warning("Probing the llama.cpp build failed: %s", exc)
        return LlamaBuild(version=_installed_version(), supports_gpu_offload=None, error=str(exc))
