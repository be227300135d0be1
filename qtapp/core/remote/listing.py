"""A repo's GGUF files, as models: one file, or one split set (``-00001-of-00003.gguf``) with
every shard's size and sha256 from the repo tree's LFS metadata, at one pinned commit."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from qtapp.core.errors import QuantLensError
from qtapp.core.gguf.shards import SPLIT_RE
from qtapp.core.remote.source import RemoteRef, hub_endpoint, hub_errors

__all__ = ["RemoteFile", "RemoteModel", "RepoListing", "list_repo"]

log = logging.getLogger(__name__)
_HEX = re.compile(r"[0-9a-fA-F]+")
_COMMIT = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")


@dataclass(frozen=True)
class RemoteFile:
    path: str  # in the repo, with its folders
    size: int
    sha256: str | None  # LFS files (every GGUF on the Hub); None for a small git file
    blob_id: str  # the git object id (the cache's blob name for a non-LFS file)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RemoteModel:
    """One model to plan and download: a single file, or every shard of a split set."""

    name: str  # the file's path, or the split set's path without "-00001-of-0000N"
    files: tuple[RemoteFile, ...]
    missing: tuple[int, ...] = ()  # shard numbers the repo lacks (then it cannot be planned)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def first(self) -> RemoteFile:
        return self.files[0]

    @property
    def shards(self) -> int:
        return len(self.files) + len(self.missing)


@dataclass(frozen=True)
class RepoListing:
    ref: RemoteRef
    commit: str  # the revision's commit: every read and download is pinned to it
    models: list[RemoteModel]
    gated: bool = False
    skipped: list[str] = field(default_factory=list)  # GGUF files that are no models (mmproj)

    @property
    def repo_id(self) -> str:
        return self.ref.repo_id

    def find(self, path: str) -> RemoteModel:
        """The model holding ``path`` (any shard of a split set, or the set's name)."""
        for m in self.models:
            if path == m.name or any(f.path == path for f in m.files):
                return m
        known = ", ".join(m.name for m in self.models[:6])
        raise QuantLensError(
            f"{self.repo_id} has no GGUF model {path}.",
            f"Its GGUF files: {known}{', …' if len(self.models) > 6 else ''}.",
        )


def is_safe_entry(f: RemoteFile) -> bool:
    """Whether a tree entry can name local files: the listing comes from a server (a mirror
    through HF_ENDPOINT, too) and is untrusted data. Its path becomes header copies and cache
    links, its sha256 and blob id cache file names: no absolute path, no ``..``, no empty or
    hidden-by-dot segment, no backslash or control character, hex digests only."""
    parts = f.path.split("/")
    if (
        not f.path
        or "\\" in f.path
        or any(ord(c) < 32 for c in f.path)
        or any(p in ("", ".", "..") for p in parts)
    ):
        return False
    if f.sha256 is not None and not (len(f.sha256) == 64 and _HEX.fullmatch(f.sha256)):
        return False
    return len(f.blob_id) in (40, 64) and _HEX.fullmatch(f.blob_id) is not None and f.size >= 0


def _is_projector(path: str) -> bool:
    """Vision projectors and importance matrices ship as GGUF beside the models."""
    name = path.rsplit("/", 1)[-1].lower()
    return name.startswith(("mmproj", "imatrix")) or ".mmproj" in name


def group_models(files: list[RemoteFile]) -> tuple[list[RemoteModel], list[str]]:
    """Split sets grouped (by folder, stem and count), singles as they are; sorted by size."""
    models: list[RemoteModel] = []
    skipped: list[str] = []
    sets: dict[tuple[str, str, int], dict[int, RemoteFile]] = {}
    for f in files:
        if not f.path.lower().endswith(".gguf"):
            continue
        if _is_projector(f.path):
            skipped.append(f.path)
            continue
        folder, _, name = f.path.rpartition("/")
        m = SPLIT_RE.match(name)
        if m is None:
            models.append(RemoteModel(f.path, (f,)))
            continue
        key = (folder, m["stem"] + m["ext"], int(m["n"]))
        sets.setdefault(key, {})[int(m["idx"])] = f
    for (folder, name, n), shards in sets.items():
        ordered = tuple(shards[i] for i in sorted(shards))
        missing = tuple(i for i in range(1, n + 1) if i not in shards)
        models.append(RemoteModel(f"{folder}/{name}" if folder else name, ordered, missing))
    models.sort(key=lambda m: (m.size, m.name))
    return models, skipped


def list_repo(ref: RemoteRef, token: str | None = None) -> RepoListing:
    """The repo's GGUF models at ``ref.revision``, pinned to its commit. Raises QuantLensError
    (unknown or gated repo, no GGUF files, no network) with one line saying what to do."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=hub_endpoint(ref.endpoint), token=token)
    with hub_errors(ref, token):
        info = api.model_info(ref.repo_id, revision=ref.revision)
        commit = info.sha or ref.revision
        tree = api.list_repo_tree(ref.repo_id, recursive=True, revision=commit)
        files = [
            RemoteFile(
                e.path,
                int(e.lfs.size if e.lfs is not None else e.size),
                e.lfs.sha256 if e.lfs is not None else None,
                e.blob_id,
            )
            for e in tree
            if isinstance(e, RepoFile)
        ]
    unsafe = [f.path for f in files if not is_safe_entry(f)]
    if unsafe:  # never from the Hub itself: a broken or hostile server
        log.warning("%s: ignored %d tree entries that cannot name a file: %s", ref.repo_id,
                    len(unsafe), unsafe[:3])  # fmt: skip
        files = [f for f in files if is_safe_entry(f)]
    if not _COMMIT.fullmatch(commit) or ".." in commit:
        raise QuantLensError(
            f"The server named {ref.repo_id}'s revision {commit[:60]!r}, which is no commit.",
            "Check HF_ENDPOINT: it should point at the Hugging Face Hub or a faithful mirror.",
        )
    models, skipped = group_models(files)
    if not models:
        raise QuantLensError(
            f"{ref.repo_id} holds no GGUF model"
            + (f" (only {', '.join(skipped[:3])})" if skipped else "")
            + ".",
            "Look for a repo with GGUF in its name (often owner/name-GGUF), or quantize the "
            "model yourself from a local file.",
        )
    gated = bool(info.gated)
    return RepoListing(ref, commit, models, gated, skipped)
