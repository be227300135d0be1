"""Find GGUF models where people keep them.

Stores: the Hugging Face hub cache, LM Studio, llama.cpp's download cache, Ollama's blob store
(manifests resolved to ``name:tag``) and the user's own folders. The walk never follows a symlink
loop (it remembers every real folder it entered), skips unreadable folders and broken links,
stops at a bounded depth, and can be cancelled between entries. Problems become text on a hit
or in :attr:`ScanResult.skipped`, never exceptions.

Every location is computed from ``home`` and ``env``, so tests can lay out fake stores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import stat
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qtapp.core.errors import QuantLensError
from qtapp.core.gguf.reader import GGUFFormatError, is_gguf, peek_gguf
from qtapp.core.gguf.shards import SPLIT_RE

log = logging.getLogger(__name__)

HF, LMSTUDIO, LLAMACPP, OLLAMA, FOLDER = (
    "Hugging Face",
    "LM Studio",
    "llama.cpp cache",
    "Ollama",
    "Folder",
)
OLLAMA_MODEL_MEDIA = "application/vnd.ollama.image.model"
DEFAULT_MAX_DEPTH = 8


@dataclass(frozen=True)
class Location:
    """One place to look. ``kind`` is "hf" (hub cache), "ollama" (models folder) or "tree"."""

    source: str
    path: Path
    kind: str = "tree"


@dataclass(frozen=True)
class ModelHit:
    path: Path  # what to open: the first shard for split models, the blob for Ollama
    name: str  # for people: file name, "org/repo/file" for HF, "name:tag" for Ollama
    source: str
    size: int  # bytes, all shards together
    architecture: str | None = None
    file_type: str | None = None
    shards: int = 1
    error: str | None = None  # why the header could not be read, or a missing shard


@dataclass
class ScanResult:
    hits: list[ModelHit] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: reason", for the log / a tooltip
    cancelled: bool = False


class _Cancelled(Exception):
    pass


# -- where to look -------------------------------------------------------------------------------
def default_locations(
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    extra_dirs: list[str] | tuple[str, ...] = (),
) -> list[Location]:
    """The usual stores for this user, then ``extra_dirs``; missing folders are left out."""
    env = os.environ if env is None else env
    real_home = home is None
    home = Path.home() if home is None else Path(home)
    locs: list[Location] = []

    hf_hub = env.get("HUGGINGFACE_HUB_CACHE") or env.get("HF_HUB_CACHE")
    if hf_hub:
        locs.append(Location(HF, Path(hf_hub), "hf"))
    elif env.get("HF_HOME"):
        locs.append(Location(HF, Path(env["HF_HOME"]) / "hub", "hf"))
    else:
        cache = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else home / ".cache"
        locs.append(Location(HF, cache / "huggingface" / "hub", "hf"))

    locs.append(Location(LMSTUDIO, home / ".lmstudio" / "models"))
    locs.append(Location(LMSTUDIO, home / ".cache" / "lm-studio" / "models"))

    if env.get("LLAMA_CACHE"):
        locs.append(Location(LLAMACPP, Path(env["LLAMA_CACHE"])))
    else:
        locs.append(Location(LLAMACPP, home / ".cache" / "llama.cpp"))
        if sys.platform == "darwin":
            locs.append(Location(LLAMACPP, home / "Library" / "Caches" / "llama.cpp"))
        elif os.name == "nt" and env.get("LOCALAPPDATA"):
            locs.append(Location(LLAMACPP, Path(env["LOCALAPPDATA"]) / "llama.cpp"))

    if env.get("OLLAMA_MODELS"):
        locs.append(Location(OLLAMA, Path(env["OLLAMA_MODELS"]), "ollama"))
    else:
        locs.append(Location(OLLAMA, home / ".ollama" / "models", "ollama"))
        if real_home and sys.platform.startswith("linux"):
            locs.append(Location(OLLAMA, Path("/usr/share/ollama/.ollama/models"), "ollama"))

    locs += [Location(FOLDER, Path(d).expanduser()) for d in extra_dirs]
    seen: set[str] = set()
    unique = []
    for loc in locs:
        key = os.path.normcase(os.path.abspath(loc.path))
        if key not in seen:
            seen.add(key)
            unique.append(loc)
    return unique


# -- the scan ------------------------------------------------------------------------------------
def scan(
    locations: list[Location] | None = None,
    *,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    extra_dirs: list[str] | tuple[str, ...] = (),
    max_depth: int = DEFAULT_MAX_DEPTH,
    should_stop: Callable[[], bool] | None = None,
    on_hit: Callable[[ModelHit], None] | None = None,
) -> ScanResult:
    """Scan every location; ``on_hit`` sees each model as it is found (from this thread)."""
    if locations is None:
        locations = default_locations(home, env, extra_dirs)
    result = ScanResult()
    stop = should_stop or (lambda: False)
    seen_files: set[tuple[int, int]] = set()

    def add(hit: ModelHit, real: Path) -> None:
        try:
            st = real.stat()
            key = (st.st_dev, st.st_ino)
        except OSError:
            key = (hash(str(real)), -1)
        if key in seen_files:
            return  # the same blob seen from another snapshot or store
        seen_files.add(key)
        result.hits.append(hit)
        if on_hit is not None:
            on_hit(hit)

    try:
        for loc in locations:
            if stop():
                raise _Cancelled
            if not _is_dir(loc.path):
                continue
            if loc.kind == "ollama":
                _scan_ollama(loc, result, add, stop)
            else:
                _scan_tree(loc, result, add, stop, max_depth)
    except _Cancelled:
        result.cancelled = True
    return result


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _list_dir(path: Path) -> list[os.DirEntry[str]]:
    """One folder's entries; the single place that touches the file system's listings."""
    with os.scandir(path) as it:
        return list(it)


def _walk_files(
    root: Path, result: ScanResult, stop: Callable[[], bool], max_depth: int
) -> Iterator[Path]:
    """Every file under root, following folder links once each, never looping."""
    visited: set[tuple[int, int]] = set()
    stack: list[tuple[Path, int]] = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        if stop():
            raise _Cancelled
        try:
            st = folder.stat()
        except OSError as exc:
            result.skipped.append(f"{folder}: {exc.strerror or exc}")
            continue
        key = (st.st_dev, st.st_ino)
        if key in visited:
            log.debug("Not entering %s again (symlink loop or second link)", folder)
            continue
        visited.add(key)
        try:
            entries = _list_dir(folder)
        except OSError as exc:
            result.skipped.append(f"{folder}: {exc.strerror or exc}")
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if stop():
                raise _Cancelled
            path = Path(entry.path)
            try:
                st_entry = entry.stat()  # follows links; a broken link raises
            except OSError:
                log.debug("Skipping broken link or unreadable entry %s", path)
                continue
            if stat.S_ISDIR(st_entry.st_mode):
                if depth < max_depth and not entry.name.startswith("."):
                    stack.append((path, depth + 1))
            elif stat.S_ISREG(st_entry.st_mode):
                yield path


def _scan_tree(
    loc: Location,
    result: ScanResult,
    add: Callable[[ModelHit, Path], None],
    stop: Callable[[], bool],
    max_depth: int,
) -> None:
    root = loc.path
    if loc.kind == "hf":
        # only snapshots hold names; blobs/ holds the same files under hashes
        repos = []
        try:
            repos = [Path(e.path) for e in _list_dir(root) if e.name.startswith("models--")]
        except OSError as exc:
            result.skipped.append(f"{root}: {exc.strerror or exc}")
        files: list[tuple[Path, Path]] = []
        for repo in sorted(repos):
            snapshots = repo / "snapshots"
            if _is_dir(snapshots):
                files += [(f, snapshots) for f in _walk_files(snapshots, result, stop, max_depth)]
    else:
        files = [(f, root) for f in _walk_files(root, result, stop, max_depth)]
    gguf_files = [(f, base) for f, base in files if f.name.lower().endswith(".gguf")]
    for hit, real in _group_and_read(loc, gguf_files, stop):
        add(hit, real)


def _display_name(loc: Location, path: Path, base: Path) -> str:
    if loc.kind == "hf":
        # .../models--org--repo/snapshots/<rev>/file.gguf -> org/repo/file.gguf
        repo_dir = base.parent.name
        repo = repo_dir.removeprefix("models--").replace("--", "/")
        rel = path.relative_to(base)
        return f"{repo}/{'/'.join(rel.parts[1:])}"
    if loc.source == LMSTUDIO:
        try:
            return str(path.relative_to(base).as_posix())
        except ValueError:
            return path.name
    return path.name


def _group_and_read(
    loc: Location, files: list[tuple[Path, Path]], stop: Callable[[], bool]
) -> Iterator[tuple[ModelHit, Path]]:
    """Group split shards (``-00001-of-00003.gguf``) and read one header per model."""
    groups: dict[tuple[Path, str, int], dict[int, Path]] = {}
    bases: dict[tuple[Path, str, int], Path] = {}
    singles: list[tuple[Path, Path]] = []
    for path, base in files:
        m = SPLIT_RE.match(path.name)
        if m:
            key = (path.parent, m["stem"], int(m["n"]))
            groups.setdefault(key, {})[int(m["idx"])] = path
            bases[key] = base
        else:
            singles.append((path, base))
    for path, base in singles:
        if stop():
            raise _Cancelled
        real = _resolve(path)
        yield _make_hit(loc, path, real, _display_name(loc, path, base), [real]), real
    for key, shards in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if stop():
            raise _Cancelled
        total = key[2]
        first = shards.get(1)
        missing = [i for i in range(1, total + 1) if i not in shards]
        anchor = first or shards[min(shards)]
        real = _resolve(anchor)
        name = _display_name(loc, anchor, bases[key])
        name = name.removesuffix(anchor.name) + f"{key[1]}.gguf"  # no "-00001-of-00003"
        hit = _make_hit(loc, anchor, real, name, [_resolve(p) for p in shards.values()])
        error = hit.error
        if missing:
            listed = ", ".join(str(i) for i in missing[:5])
            error = f"missing shard {listed} of {total}; download the rest before opening it"
        yield dataclasses.replace(hit, shards=total, error=error), real


def _resolve(path: Path) -> Path:
    """Where a snapshot link points (the blob); the path itself if that fails."""
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):
        return path


def _make_hit(loc: Location, path: Path, real: Path, name: str, parts: list[Path]) -> ModelHit:
    size = 0
    for part in parts:
        with contextlib.suppress(OSError):
            size += part.stat().st_size
    try:
        header = peek_gguf(real)
    except QuantLensError as exc:
        reason = exc.detail if isinstance(exc, GGUFFormatError) else exc.message
        return ModelHit(path, name, loc.source, size, error=f"cannot read header: {reason}")
    return ModelHit(path, name, loc.source, size, header.architecture, header.file_type)


# -- Ollama --------------------------------------------------------------------------------------
def _scan_ollama(
    loc: Location,
    result: ScanResult,
    add: Callable[[ModelHit, Path], None],
    stop: Callable[[], bool],
) -> None:
    """manifests/<host>/<namespace>/<name>/<tag> (JSON) -> the model layer -> blobs/sha256-<hex>."""
    manifests = loc.path / "manifests"
    blobs = loc.path / "blobs"
    if not _is_dir(manifests):
        return
    for manifest in _walk_files(manifests, result, stop, max_depth=4):
        if stop():
            raise _Cancelled
        rel = manifest.relative_to(manifests).parts
        if len(rel) != 4:
            continue
        host, namespace, model, tag = rel
        if host == "registry.ollama.ai" and namespace == "library":
            name = f"{model}:{tag}"
        elif host == "registry.ollama.ai":
            name = f"{namespace}/{model}:{tag}"
        else:
            name = f"{host}/{namespace}/{model}:{tag}"
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            layer = next(
                x for x in data.get("layers", []) if x.get("mediaType") == OLLAMA_MODEL_MEDIA
            )
            digest = str(layer["digest"])
        except (OSError, ValueError, StopIteration, KeyError, TypeError, AttributeError) as exc:
            result.skipped.append(f"{manifest}: not a model manifest ({type(exc).__name__})")
            continue
        blob = blobs / digest.replace(":", "-")
        if not blob.is_file():
            result.skipped.append(f"{manifest}: its blob {blob.name} is missing")
            continue
        if not is_gguf(blob):
            result.skipped.append(f"{blob}: not a GGUF file")
            continue
        add(_make_hit(loc, blob, blob, name, [blob]), blob)
