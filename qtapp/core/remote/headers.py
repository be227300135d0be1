"""A remote GGUF's header, read with HTTP range requests and laid down as a local sparse file.

The same parser as for local files (:mod:`qtapp.core.gguf.reader`, with all its checks against
truncated and hostile headers) walks the header through a cursor that fetches byte ranges on
demand: a doubling step up to a cap, so the bytes read stay within a few MiB of the header's
own size. The header is then written as a file with the remote file's name and size whose data
section is a sparse extent (as :mod:`qtapp.core.gguf.lean` does for dry runs): the model reader,
THE fingerprint, the planner and llama.cpp's dry runs see the same file as on disk, so the plan
of a remote file is the plan of that file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError
from qtapp.core.gguf.reader import GGUF_MAGIC, GGUFFormatError, _Cursor, _parse
from qtapp.core.remote.listing import RemoteFile, RemoteModel, RepoListing
from qtapp.core.remote.source import hub_endpoint, hub_errors

__all__ = [
    "FIRST_READ",
    "KEEP_REPOS",
    "MAX_REMOTE_HEADER",
    "ReadStats",
    "fetch_model_headers",
    "header_folder",
    "prune_headers",
]

#: the first range request; later ones double the bytes held, at most MAX_STEP at a time
FIRST_READ = 256 << 10
MAX_STEP = 2 << 20
#: a header larger than this is refused before it is fetched (the biggest real ones, MoE
#: models with 1,000+ tensors a shard, are tens of MiB)
MAX_REMOTE_HEADER = 256 << 20
#: repos whose header copies are kept (the most recently planned); of each only one commit
KEEP_REPOS = 16


@dataclass
class ReadStats:
    """What reading headers cost: bytes received and range requests made (thread-safe)."""

    bytes: int = 0
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, n: int) -> None:
        with self._lock:
            self.bytes += n
            self.requests += 1


class _RangeReader:
    """``read(n)`` from a remote file: one ranged GET through huggingface_hub (its session,
    proxies, token, and retries on 429 / 5xx / dropped connections)."""

    def __init__(self, url: str, headers: dict[str, str], stats: ReadStats) -> None:
        self.url = url
        self.headers = headers
        self.stats = stats
        self.pos = 0

    def read(self, n: int) -> bytes:
        from huggingface_hub.utils._http import hf_raise_for_status, http_backoff

        if n <= 0:
            return b""
        headers = {**self.headers, "Range": f"bytes={self.pos}-{self.pos + n - 1}"}
        r = http_backoff("GET", self.url, headers=headers, follow_redirects=True)
        hf_raise_for_status(r)
        data = r.content
        if r.status_code == 200:  # the server ignored the range: keep only what was asked
            data = data[self.pos : self.pos + n]
        self.stats.add(len(r.content))
        self.pos += len(data)
        return data[:n]


class _RemoteCursor(_Cursor):
    """The reader's cursor, growing by doubling steps (capped) instead of quadrupling: range
    requests are cheap, bytes over the network are not."""

    def grow(self, upto: int, what: str) -> None:
        if upto > self.file_size:
            raise self.fail(f"the file ends inside {what} (truncated?)")
        if upto > MAX_REMOTE_HEADER:
            raise self.fail(f"its header is implausibly large (over {MAX_REMOTE_HEADER >> 20} MiB)")
        step = min(max(self.end, FIRST_READ), MAX_STEP)
        want = min(self.file_size, MAX_REMOTE_HEADER, max(upto, self.end + step))
        more = self.fh.read(want - self.end)
        if self.end + len(more) < upto:
            raise self.fail(f"the file ends inside {what} (truncated?)")
        self.buf += more
        self.end = len(self.buf)


def remote_cache() -> Path:
    """QuantLens's folder of header copies: ``<owner>--<name>/<commit>/<path in the repo>``."""
    from qtapp.core.app.paths import app_paths

    return app_paths().cache / "remote"


def header_folder(listing: RepoListing) -> Path:
    """Where the headers of this repo at this commit are laid down (kept: a second plan of the
    same commit reads nothing)."""
    owner, name = listing.repo_id.split("/", 1)
    return remote_cache() / f"{owner}--{name}" / listing.commit


def prune_headers(listing: RepoListing, keep_repos: int = KEEP_REPOS) -> list[Path]:
    """Keep the cache of header copies bounded: of this repo only the commit being planned
    (an older commit's copies are never read again once the repo moved on), and of all repos
    only the ``keep_repos`` planned most recently. Returns the folders removed."""
    import shutil

    folder = header_folder(listing)
    repo_dir = folder.parent
    removed: list[Path] = []
    olds: list[Path] = []
    try:
        if repo_dir.is_dir():
            os.utime(repo_dir)  # planned now: the newest repo
            olds = [p for p in repo_dir.iterdir() if p.is_dir() and p.name != folder.name]
        repos = sorted(
            (p for p in repo_dir.parent.iterdir() if p.is_dir() and "--" in p.name),
            key=lambda p: p.stat().st_mtime_ns,
            reverse=True,
        )
    except OSError:  # no cache yet, or one that cannot be read: nothing to prune
        return removed
    for old in olds + [p for p in repos[keep_repos:] if p != repo_dir]:
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    return removed


def _header_bytes(
    listing: RepoListing, f: RemoteFile, token: str | None, stats: ReadStats
) -> bytes:
    """The first shard's bytes up to its tensor data, checked by the local reader's rules."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils._headers import build_hf_headers

    url = hf_hub_url(
        listing.repo_id,
        f.path,
        revision=listing.commit,
        endpoint=hub_endpoint(listing.ref.endpoint),
    )
    headers: dict[str, Any] = build_hf_headers(token=token)
    headers["Accept-Encoding"] = "identity"
    reader = _RangeReader(url, headers, stats)
    shown = Path(f"{listing.repo_id}/{f.path}")
    c = _RemoteCursor(reader, shown, f.size, min(f.size, FIRST_READ))  # type: ignore[arg-type]
    if c.buf[:4] != GGUF_MAGIC:
        raise GGUFFormatError(shown, "it is not a GGUF file (it does not start with 'GGUF')")
    if f.size < 24:
        raise GGUFFormatError(shown, f"it is only {f.size} bytes long (truncated)")
    c.pos = 4
    parsed = _parse(c)
    if parsed.data_offset > f.size:
        raise GGUFFormatError(shown, "the file ends before its tensor data (truncated?)")
    if c.end < parsed.data_offset:
        c.grow(parsed.data_offset, "the header's padding")
    return bytes(c.buf[: parsed.data_offset])


def _lay_down(dest: Path, header: bytes, size: int) -> None:
    """``header`` then a sparse extent up to ``size``, under a .part name until complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with open(part, "wb") as fh:
            fh.write(header)
            fh.truncate(size)
        os.replace(part, dest)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise QuantLensError(
            f"Cannot write the header copy {dest}: {exc.strerror or exc}.",
            "Free some disk space in QuantLens's cache folder (or set QUANTLENS_HOME).",
        ) from None


def fetch_model_headers(
    listing: RepoListing,
    model: RemoteModel,
    token: str | None = None,
    stats: ReadStats | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Path:
    """Every shard's header of ``model`` laid down locally; returns the first shard's path,
    which :func:`qtapp.core.gguf.model.read_model` reads like the downloaded file."""
    if model.missing:
        raise QuantLensError(
            f"{model.name} is a split set of {model.shards} files, but the repo lacks part "
            f"{', '.join(str(i) for i in model.missing[:3])}.",
            "Choose another file of the repo.",
        )
    stats = stats if stats is not None else ReadStats()
    folder = header_folder(listing)
    prune_headers(listing)
    paths = [folder / f.path for f in model.files]
    with hub_errors(listing.ref, token):
        for f, dest in zip(model.files, paths, strict=True):
            if should_stop():
                raise QuantLensError("Stopped.", "")
            if dest.is_file() and dest.stat().st_size == f.size:
                continue  # laid down by an earlier plan of this commit
            try:
                header = _header_bytes(listing, f, token, stats)
            except GGUFFormatError as exc:
                raise QuantLensError(
                    f"{listing.repo_id}/{f.path} cannot be read as a GGUF model: {exc.detail}.",
                    "It is no llama.cpp model file (or a damaged one); choose another file.",
                ) from None
            _lay_down(dest, header, f.size)
    return paths[0]
