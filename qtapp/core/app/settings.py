"""The user's settings: a typed, versioned dataclass stored as JSON in the config folder.

``Settings.load()`` never fails: a missing file gives the defaults, an old file is migrated, and
a corrupt file is kept beside as ``settings.json.bak`` while QuantLens starts from the defaults
(with a logged warning). ``QSettings`` is used only for window geometry, by the UI.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from qtapp.core.app.paths import app_paths

log = logging.getLogger(__name__)

#: the version :meth:`Settings.save` writes;
#: bump it and add a step to ``_MIGRATIONS`` to change fields
SETTINGS_VERSION = 2
MAX_RECENT = 10
THEMES = ("system", "light", "dark")


def _default_output_dir() -> str:
    return str(app_paths().models / "quants")


@dataclass
class Settings:
    """What the user can change on the Settings page. Other modules read these fields."""

    version: int = SETTINGS_VERSION
    threads: int = 0  # 0 = let llama.cpp choose (physical cores)
    default_ctx: int = 4096
    kv_type: str = "f16"
    gpu_margin_mib: int = 1024  # kept free on every GPU when planning a fit
    output_dir: str = field(default_factory=_default_output_dir)
    extra_model_dirs: list[str] = field(default_factory=list)
    eval_text: str | None = None  # path of a UTF-8 text file; None = the built-in text
    theme: str = "system"  # "system" | "light" | "dark"
    first_run_done: bool = False
    #: network use the user asks for: reading the headers of a Hugging Face repo's GGUF files,
    #: downloading a model from it, standard task files; off: nothing touches the network
    network_allowed: bool = False
    recent_models: list[str] = field(default_factory=list)

    # -- persistence ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        """Read the settings: defaults if absent, migrated if old, defaults + .bak if corrupt."""
        path = path or app_paths().settings_file
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("the file does not hold a JSON object")
            return cls.from_dict(migrate(data))
        except (OSError, ValueError, TypeError) as exc:
            backup = path.with_name(path.name + ".bak")
            try:
                os.replace(path, backup)
            except OSError:
                backup = path
            log.warning(
                "Settings file %s could not be read (%s); starting from the defaults. "
                "The old file is kept as %s.",
                path,
                exc,
                backup,
            )
            return cls()

    def save(self, path: Path | None = None) -> Path:
        """Write atomically (temp file + rename), so a crash never leaves half a file."""
        path = path or app_paths().settings_file
        path.parent.mkdir(parents=True, exist_ok=True)
        self.version = SETTINGS_VERSION
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Build from a (migrated) dict: unknown keys are ignored, bad values become defaults."""
        defaults = cls()
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            default = getattr(defaults, f.name)
            kwargs[f.name] = _coerce(f.name, value, default)
        settings = cls(**kwargs)
        settings.version = SETTINGS_VERSION
        return settings

    # -- helpers -------------------------------------------------------------------------------
    def add_recent(self, model: str | Path) -> None:
        """Put a model at the top of the recent list (no duplicates, at most ten)."""
        text = str(model)
        self.recent_models = [text] + [m for m in self.recent_models if m != text]
        del self.recent_models[MAX_RECENT:]

    def effective_threads(self) -> int:
        """Threads to pass to llama.cpp: the setting, or the physical cores when 0 (auto)."""
        if self.threads > 0:
            return self.threads
        count = os.cpu_count() or 2
        return max(1, count // 2) if count > 4 else count


#: the KV cache types the planner and llama.cpp accept here
KV_TYPES = ("f16", "q8_0", "q4_0")
#: inclusive bounds of the numeric settings (a hand-edited file may hold anything)
LIMITS = {"threads": (0, 1024), "default_ctx": (256, 1 << 24), "gpu_margin_mib": (0, 1 << 20)}


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Keep a value only if it has the right shape; otherwise log and use the default."""
    ok = True
    if name == "eval_text":
        ok = value is None or isinstance(value, str)
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        low, high = LIMITS.get(name, (0, 1 << 62))
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    elif isinstance(default, str):
        ok = isinstance(value, str) and bool(value)
        if ok and name == "theme":
            ok = value in THEMES
        if ok and name == "kv_type":
            ok = value in KV_TYPES
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if ok and name == "recent_models":
            value = value[:MAX_RECENT]
    if not ok:
        log.warning("Setting %s has an unusable value %r; using %r.", name, value, default)
        return default
    return value


# -- migrations: each step takes a dict of version N and returns one of version N + 1 ------------
def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (QuantLens 0.0.x) used other names: ``n_threads``, ``ctx``, ``kv_cache_type``,
    ``margin_mb``, ``model_dirs``, ``dark_mode`` and ``recent``."""
    renames = {
        "n_threads": "threads",
        "ctx": "default_ctx",
        "kv_cache_type": "kv_type",
        "margin_mb": "gpu_margin_mib",
        "model_dirs": "extra_model_dirs",
        "recent": "recent_models",
    }
    out = {renames.get(k, k): v for k, v in data.items()}
    if "dark_mode" in out:
        dark = out.pop("dark_mode")
        out["theme"] = {True: "dark", False: "light"}.get(dark, "system")
    if isinstance(out.get("kv_type"), str):
        out["kv_type"] = out["kv_type"].lower()
    out["version"] = 2
    return out


_MIGRATIONS = {1: _v1_to_v2}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a settings dict of any known version up to :data:`SETTINGS_VERSION`."""
    version = data.get("version", 1)
    if not isinstance(version, int) or version < 1:
        version = 1
    if version > SETTINGS_VERSION:
        log.warning(
            "Settings file is from a newer QuantLens (version %s); reading the fields it shares.",
            version,
        )
        return data
    while version < SETTINGS_VERSION:
        data = _MIGRATIONS[version](data)
        version = data["version"]
    return data
