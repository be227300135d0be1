"""Remove what a killed job left behind.

A quantization writes ``<name>.gguf.part`` and renames it only on success (DESIGN.md, P3), so a
``.gguf.part`` file at start is the remains of a job that was killed or crashed. Only that
pattern is touched: a browser's ``something.part`` download in the same folder is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from qtapp.core.app.paths import app_paths
from qtapp.core.results.store import ResultsStore

log = logging.getLogger(__name__)

PART_PATTERN = "*.gguf.part"


def clean_partial_outputs(folders: Iterable[str | Path], recursive: bool = False) -> list[Path]:
    """Delete ``*.gguf.part`` files in ``folders`` (not following links); returns what went.

    A folder that is missing or unreadable is skipped; a file that cannot be removed is logged
    and left (the caller says what was removed, never claims more).
    """
    removed: list[Path] = []
    seen: set[Path] = set()
    for folder in folders:
        root = Path(folder).expanduser()
        try:
            root = root.resolve()
        except OSError:
            continue
        if root in seen or not root.is_dir():
            continue
        seen.add(root)
        try:
            candidates = list(root.rglob(PART_PATTERN) if recursive else root.glob(PART_PATTERN))
        except OSError as exc:
            log.warning("cannot list %s: %s", root, exc)
            continue
        for part in candidates:
            try:
                if part.is_symlink() or not part.is_file():
                    continue
                part.unlink()
                removed.append(part)
                log.info("removed leftover partial output %s", part)
            except OSError as exc:
                log.warning("could not remove leftover %s: %s", part, exc)
    return removed


@dataclass(frozen=True)
class StartupRecovery:
    """What :func:`recover_at_start` found and fixed, for the status bar."""

    interrupted: list[int]
    removed: list[Path]
    skipped_busy: bool = False

    def message(self) -> str:
        parts = []
        if self.interrupted:
            n = len(self.interrupted)
            parts.append(
                f"{n} run{'s' if n > 1 else ''} left unfinished by a crash marked interrupted"
            )
        if self.removed:
            n = len(self.removed)
            parts.append(
                f"removed {n} leftover partial file{'s' if n > 1 else ''} "
                f"({', '.join(p.name for p in self.removed[:3])}"
                f"{', …' if n > 3 else ''})"
            )
        text = "; ".join(parts)
        return text[:1].upper() + text[1:] + "." if text else ""


def output_folders(store: ResultsStore, extra: Iterable[str | Path] = ()) -> list[Path]:
    """Where partial outputs may lie: the app's model folder, the output folder setting, the
    folders of stored quantizations, and ``extra``."""
    folders: list[Path] = [app_paths().models, *map(Path, extra)]
    try:
        from qtapp.core.app.settings import Settings

        folders.append(Path(Settings.load().output_dir))
    except Exception as exc:  # noqa: BLE001 - settings are optional here
        log.debug("no output folder setting: %s", exc)
    for run in store.list_runs(kind="quantize"):
        out = run.metrics.get("path") or run.settings.get("out_dir")
        if isinstance(out, str) and out:
            p = Path(out)
            folders.append(p if p.is_dir() else p.parent)
    return list(dict.fromkeys(folders))


def recover_at_start(
    store: ResultsStore, extra_folders: Iterable[str | Path] = ()
) -> StartupRecovery:
    """Mark runs of dead processes interrupted and delete their ``.gguf.part`` leftovers.

    When another QuantLens process has a job going, its ``.part`` files are live: leave them.
    """
    interrupted = store.mark_interrupted_at_start()
    if store.busy_elsewhere():
        return StartupRecovery(interrupted, [], skipped_busy=True)
    return StartupRecovery(interrupted, clean_partial_outputs(output_folders(store, extra_folders)))
