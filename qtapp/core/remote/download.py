"""Download a repo's model (every shard of a split set) into the standard Hugging Face cache,
resumable, cancellable, checked against the repo's sha256 before it takes its name.

The layout is huggingface_hub's: ``models--owner--name/blobs/<sha256>`` holds the bytes,
``snapshots/<commit>/<path>`` links to them, ``refs/<revision>`` names the commit; so the
Models page, llama.cpp (``-hf``) and ``hf_hub_download`` find the file. While it downloads, a
shard lives as ``blobs/<sha256>.incomplete`` (huggingface_hub's own resumable GET appends to
it, resuming after a dropped connection; a cancelled or failed download keeps it for the next
try). Only when its size and sha256 match the repo's LFS metadata does it become the blob, and
only when every shard is a blob do the snapshot links appear: a model never shows up under its
name incomplete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from qtapp.core.errors import QuantLensError
from qtapp.core.remote.listing import RemoteFile, RemoteModel, RepoListing
from qtapp.core.remote.source import hub_cache_dir, hub_endpoint, hub_errors, progress_tqdm

__all__ = ["DownloadCancelled", "DownloadProgress", "fetch_model", "snapshot_path"]

_CHUNK = 8 << 20
#: tries of one shard's GET on a server error (5xx), each resuming where the last one stopped
RETRIES = 4
log = logging.getLogger(__name__)


class DownloadCancelled(QuantLensError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"The download of {name} was cancelled.",
            "What was fetched is kept; download it again to resume.",
        )


@dataclass(frozen=True)
class DownloadProgress:
    file: str  # the shard being fetched
    done: int  # bytes of the whole model on disk
    total: int
    rate: float  # bytes/s over this session (0 until known)
    phase: str  # "checking" (hashing what an earlier try fetched) | "downloading" | "verifying"

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def text(self) -> str:
        mib = f"{self.done / 2**20:,.1f} of {self.total / 2**20:,.1f} MiB"
        if self.phase != "downloading":
            return f"{self.phase} {self.file}: {mib}"
        eta = self.eta_s
        rate = f", {self.rate / 2**20:.1f} MiB/s" if self.rate > 0 else ""
        left = f", about {_duration(eta)} left" if eta is not None else ""
        return f"{mib}{rate}{left}"


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def storage_folder(cache_dir: Path, repo_id: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")


def snapshot_path(listing: RepoListing, model: RemoteModel, cache_dir: Path | None = None) -> Path:
    """Where the model's first shard appears once downloaded."""
    folder = storage_folder(cache_dir or hub_cache_dir(), listing.repo_id)
    return folder / "snapshots" / listing.commit / model.first.path


class _Hashing:
    """The file huggingface_hub's GET writes to, hashing what it appends. Should the server
    ignore a range (and the GET rewind the file), the hash is redone from disk at the end."""

    def __init__(self, fh: BinaryIO, digest: Any, should_stop: Callable[[], bool]) -> None:
        self.fh = fh
        self.digest = digest
        self.dirty = False
        self.should_stop = should_stop

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        n = self.fh.write(data)
        if self.should_stop():  # after the write: what arrived is kept for the next try
            raise _Stop
        return n

    def seek(self, *args: Any) -> int:
        self.dirty = True
        return self.fh.seek(*args)

    def truncate(self, *args: Any) -> int:
        self.dirty = True
        return self.fh.truncate(*args)

    def tell(self) -> int:
        return self.fh.tell()

    def flush(self) -> None:
        self.fh.flush()


def _hash_file(
    path: Path, digest: Any, step: Callable[[int], object], stop: Callable[[], bool]
) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            if stop():
                raise _Stop
            digest.update(chunk)
            step(len(chunk))


class _Stop(Exception):
    pass


def _git_blob_digest(size: int) -> Any:
    digest = hashlib.sha1()  # noqa: S324 - git's object id, not a security hash
    digest.update(f"blob {size}\0".encode())
    return digest


def fetch_model(
    listing: RepoListing,
    model: RemoteModel,
    online: bool,
    cache_dir: Path | None = None,
    token: str | None = None,
    progress: Callable[[DownloadProgress], object] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Path:
    """Download ``model`` (all shards) into the Hugging Face cache and return the first shard's
    snapshot path. Raises :class:`DownloadCancelled` when ``should_stop()`` turns true (the
    part fetched is kept), QuantLensError for everything else, in one line."""
    from qtapp.core.remote.source import require_online

    cache_dir = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    store = storage_folder(cache_dir, listing.repo_id)
    final = snapshot_path(listing, model, cache_dir)
    pointers = [
        final.parent / Path(f.path).relative_to(Path(model.first.path).parent) for f in model.files
    ]
    if all(p.exists() for p in pointers):
        return final
    require_online(online, f"Downloading {model.name}")
    if model.missing:
        raise QuantLensError(
            f"{model.name} is a split set of {model.shards} files, but the repo lacks part "
            f"{', '.join(str(i) for i in model.missing[:3])}.",
            "Choose another file of the repo.",
        )
    blobs = store / "blobs"
    new_store = not store.exists()
    try:
        blobs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QuantLensError(
            f"Cannot write to the Hugging Face cache {cache_dir}: {exc.strerror or exc}.",
            "Set HF_HUB_CACHE (or HF_HOME) to a writable folder.",
        ) from None
    blob_paths = [blobs / _blob_name(f) for f in model.files]
    try:
        _check_space(cache_dir, model, blob_paths)
        clock = _Clock(model.size, sum(_have(b) for b in blob_paths), progress)
        for f, blob in zip(model.files, blob_paths, strict=True):
            if blob.exists():
                continue
            _fetch_one(listing, f, blob, token, clock, should_stop, model.name)
    except BaseException:
        _tidy(store if new_store else None, blob_paths)
        raise
    from huggingface_hub.file_download import (
        _cache_commit_hash_for_specific_revision,
        _create_symlink,
    )

    for blob, pointer in zip(blob_paths, pointers, strict=True):
        pointer.parent.mkdir(parents=True, exist_ok=True)
        _create_symlink(str(blob), str(pointer), new_blob=True)
    _cache_commit_hash_for_specific_revision(str(store), listing.ref.revision, listing.commit)
    return final


def _tidy(new_store: Path | None, blobs: list[Path]) -> None:
    """After a failed or cancelled try: drop empty parts (nothing to resume) and the repo's
    cache folder when this try made it and nothing in it is worth keeping."""
    for blob in blobs:
        part = blob.with_name(blob.name + ".incomplete")
        try:
            if part.stat().st_size == 0:
                part.unlink()
        except OSError:
            pass
    if new_store is not None and not any(p.is_file() for p in new_store.rglob("*")):
        shutil.rmtree(new_store, ignore_errors=True)


def _get(
    url: str,
    part: Path,
    digest: Any,
    headers: dict[str, str],
    size: int,
    tqdm_class: Any,
    should_stop: Callable[[], bool],
) -> bool:
    """huggingface_hub's resumable GET appending to ``part`` (it resumes by itself after a
    dropped connection); True when it rewound the file (the hash must be redone)."""
    from huggingface_hub.file_download import http_get

    have = part.stat().st_size if part.exists() else 0
    with part.open("ab") as fh:
        sink = _Hashing(fh, digest, should_stop)
        http_get(
            url,
            cast(BinaryIO, sink),
            resume_size=have,
            headers=headers,
            expected_size=size,
            tqdm_class=tqdm_class,
        )
    return sink.dirty


def _blob_name(f: RemoteFile) -> str:
    return f.sha256 or f.blob_id


def _have(blob: Path) -> int:
    """Bytes of a shard already on disk (its blob, or the part an earlier try fetched)."""
    for p in (blob, blob.with_name(blob.name + ".incomplete")):
        try:
            return p.stat().st_size
        except OSError:
            continue
    return 0


def _check_space(cache_dir: Path, model: RemoteModel, blobs: list[Path]) -> None:
    need = model.size - sum(_have(b) for b in blobs)
    try:
        free = shutil.disk_usage(blobs[0].parent).free
    except OSError:
        return
    if need > free:
        raise QuantLensError(
            f"{model.name} needs {need / 2**30:.1f} GiB more, but {cache_dir} has "
            f"{free / 2**30:.1f} GiB free.",
            "Free some disk space, or set HF_HUB_CACHE to a folder on a larger disk.",
        )


class _Clock:
    """Bytes done over the whole model, the rate since this call began, and the reports."""

    def __init__(
        self, total: int, done: int, report: Callable[[DownloadProgress], object] | None
    ) -> None:
        self.total = total
        self.done = done
        self.report = report
        self.start = time.monotonic()
        self.fetched = 0

    def step(self, file: str, n: int, phase: str = "downloading") -> None:
        if phase == "downloading":
            self.fetched += n
        if self.report is None:
            return
        elapsed = time.monotonic() - self.start
        rate = self.fetched / elapsed if elapsed > 0.5 and self.fetched else 0.0
        self.report(DownloadProgress(file, self.done, self.total, rate, phase))


def _report_class(clock: _Clock, path: str) -> Any:
    """A tqdm for huggingface_hub's GET that feeds :class:`_Clock` instead of a terminal."""

    def on_step(_bar: Any, step: int) -> None:
        clock.done += step
        clock.step(path, step)

    return progress_tqdm(on_step)


def _fetch_one(
    listing: RepoListing,
    f: RemoteFile,
    blob: Path,
    token: str | None,
    clock: _Clock,
    should_stop: Callable[[], bool],
    name: str,
) -> None:
    """One shard into ``blob``: resumed from its .incomplete part, verified, then renamed."""
    part = blob.with_name(blob.name + ".incomplete")
    have = part.stat().st_size if part.exists() else 0
    if have > f.size:  # not ours to resume: start again
        part.unlink()
        clock.done -= have
        have = 0
    digest = hashlib.sha256() if f.sha256 else _git_blob_digest(f.size)
    if have:
        try:
            _hash_file(part, digest, lambda n: clock.step(f.path, 0, "checking"), should_stop)
        except _Stop:
            raise DownloadCancelled(name) from None
    with hub_errors(listing.ref, token):
        dirty = _download(listing, f, part, digest, token, clock, should_stop, name)
    if dirty:
        digest = hashlib.sha256() if f.sha256 else _git_blob_digest(f.size)
        _hash_file(part, digest, lambda n: clock.step(f.path, 0, "verifying"), lambda: False)
    expected = f.sha256 or f.blob_id
    if digest.hexdigest() != expected:
        part.unlink(missing_ok=True)
        raise QuantLensError(
            f"{f.path} does not match the repo's checksum (sha256 {digest.hexdigest()[:12]}…, "
            f"expected {expected[:12]}…); the bad copy was deleted.",
            "Download it again; if it fails again, the repo or a proxy serves a wrong file.",
        )
    os.chmod(part, 0o644)
    os.replace(part, blob)


def _download(
    listing: RepoListing,
    f: RemoteFile,
    part: Path,
    digest: Any,
    token: str | None,
    clock: _Clock,
    should_stop: Callable[[], bool],
    name: str,
) -> bool:
    """GET the rest of ``f`` into ``part``, trying again on server errors; True when the file
    was rewound (its hash must be redone from disk)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils._headers import build_hf_headers

    endpoint = hub_endpoint(listing.ref.endpoint)
    url = hf_hub_url(listing.repo_id, f.path, revision=listing.commit, endpoint=endpoint)
    headers = build_hf_headers(token=token)
    headers["Accept-Encoding"] = "identity"
    report = _report_class(clock, f.path)
    dirty = False
    for attempt in range(1, RETRIES + 1):
        try:
            dirty |= _get(url, part, digest, headers, f.size, report, should_stop)
            return dirty
        except _Stop:
            raise DownloadCancelled(name) from None
        except HfHubHTTPError as exc:  # 5xx: huggingface_hub's GET retries only 408 / 429
            status = exc.response.status_code if exc.response is not None else 0
            if status < 500 or attempt == RETRIES:
                raise
            log.warning("%s: HTTP %s, trying again (%d of %d)", f.path, status, attempt, RETRIES)
            time.sleep(attempt)
        except ValueError as exc:  # over 50 GB: huggingface_hub wants its Xet client
            raise QuantLensError(f"{f.path}: {exc}", "Install hf_xet: pip install hf_xet") from None
        except OSError as exc:
            if "Consistency check failed" in str(exc):
                raise QuantLensError(
                    f"{f.path} arrived with the wrong size.",
                    "Try again: the download resumes from what arrived so far.",
                ) from None
            raise QuantLensError(
                f"Cannot write {part}: {exc.strerror or exc}.",
                "Free some disk space, or set HF_HUB_CACHE to a folder on a larger disk.",
            ) from None
    return dirty
