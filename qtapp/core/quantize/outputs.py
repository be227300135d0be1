"""Where a quantization's output and its partial files go, shared by the parent and the child.

Naming: ``<model-stem>-<TYPE>.gguf`` (the recipe's name for recipes) in the output folder.
A job writes ``<name>.part`` (keep_split: ``<name-without-.gguf>.part-0000i-of-0000n.gguf``) and
renames on success; whatever ends a job early removes the partial files.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from qtapp.core.errors import QuantLensError
from qtapp.core.fit.quants import split_quant_name

log = logging.getLogger(__name__)

#: room kept on top of tensor data and the source's metadata when checking free space
METADATA_MARGIN = 1 << 20


def model_stem(model: str | Path) -> str:
    """``gemma-3-270m-it-Q4_K_M.gguf`` -> ``gemma-3-270m-it`` (split and type suffixes dropped)."""
    stem, _type = split_quant_name(model)
    return stem or Path(model).name.removesuffix(".gguf")


def output_path(model: str | Path, target: str, out_dir: str | Path) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.+-]", "_", target)
    return Path(out_dir) / f"{model_stem(model)}-{safe}.gguf"


def _base(out: Path) -> str:
    name = out.name
    return name[:-5] if name.lower().endswith(".gguf") else name


def part_prefix(out: Path) -> Path:
    """The prefix llama.cpp gets for keep_split outputs.

    Its shards are ``<prefix>-0000i-of-0000n.gguf``.
    """
    return out.with_name(_base(out) + ".part")


def final_paths(out: Path, keep_split: bool, n_split: int) -> list[Path]:
    if not keep_split:
        return [out]
    return [
        out.with_name(f"{_base(out)}-{i + 1:05d}-of-{n_split:05d}.gguf") for i in range(n_split)
    ]


def part_paths(out: Path, keep_split: bool, n_split: int) -> list[Path]:
    if not keep_split:
        return [out.with_name(out.name + ".part")]
    prefix = part_prefix(out)
    return [
        prefix.with_name(f"{prefix.name}-{i + 1:05d}-of-{n_split:05d}.gguf") for i in range(n_split)
    ]


def remove_partials(out: Path, keep_split: bool | None = None) -> list[Path]:
    """Delete every partial file of ``out`` (both layouts); return what was removed."""
    removed: list[Path] = []
    candidates = [out.with_name(out.name + ".part")]
    prefix = part_prefix(out)
    if prefix.parent.is_dir():
        candidates += sorted(prefix.parent.glob(glob_escape(prefix.name) + "-*-of-*.gguf"))
    for path in candidates:
        try:
            path.unlink()
            removed.append(path)
        except (FileNotFoundError, NotADirectoryError):
            pass  # nothing was written there (e.g. the output "folder" is a file)
        except OSError as exc:
            log.warning("Could not remove the partial file %s: %s", path, exc)
    return removed


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def check_output_free(folder: Path, need: int) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise QuantLensError(
            f"Cannot check free space in {folder}: {exc}.", "Choose another output folder."
        ) from exc
    if free < need:
        raise QuantLensError(
            f"Not enough free disk space in {folder}: the output needs about "
            f"{need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free.",
            "Free some space or choose another output folder.",
        )
