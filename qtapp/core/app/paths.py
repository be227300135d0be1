"""Where QuantLens keeps its files.

Everything goes through platformdirs, and one environment variable, ``QUANTLENS_HOME``,
redirects all of it (tests point it at a temporary folder; a portable install at a USB stick).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from platformdirs import PlatformDirs

HOME_ENV = "QUANTLENS_HOME"
APP_NAME = "quantlens"


@dataclass(frozen=True)
class AppPaths:
    """The folders QuantLens writes to. Created on first use by :func:`app_paths`."""

    config: Path
    data: Path
    cache: Path
    logs: Path

    @property
    def results_db(self) -> Path:
        return self.data / "results.sqlite3"

    @property
    def settings_file(self) -> Path:
        return self.config / "settings.json"

    @property
    def log_file(self) -> Path:
        return self.logs / "quantlens.log"

    @property
    def models(self) -> Path:
        """Models QuantLens itself makes or unpacks (the demo model, quants by default)."""
        return self.data / "models"


def app_paths(create: bool = True) -> AppPaths:
    """The folders for this process, honouring ``QUANTLENS_HOME``."""
    home = os.environ.get(HOME_ENV)
    if home:
        root = Path(home).expanduser()
        paths = AppPaths(root / "config", root / "data", root / "cache", root / "logs")
    else:
        dirs = PlatformDirs(APP_NAME, appauthor=False)
        paths = AppPaths(
            Path(dirs.user_config_dir),
            Path(dirs.user_data_dir),
            Path(dirs.user_cache_dir),
            Path(dirs.user_log_dir),
        )
    if create:
        for folder in (paths.config, paths.data, paths.cache, paths.logs, paths.models):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                from qtapp.core.errors import QuantLensError

                raise QuantLensError(
                    f"Cannot create QuantLens's folder {folder}: {exc.strerror or exc}.",
                    f"Point {HOME_ENV} at a writable folder (or unset it), or fix the permissions.",
                ) from exc
    return paths


def resources_dir() -> Path:
    """The ``resources/`` folder: beside the package in a checkout, inside a frozen build."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parents[3] / "resources"


def write_json_atomic(path: Path, data: object) -> None:
    """Write ``data`` as JSON through ``<name>.part`` and a rename: a reader never sees half a
    file. Raises OSError (a full disk, a read-only folder) for the caller to judge."""
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)
