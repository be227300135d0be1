"""On-disk cache of a base model's log-probabilities over an evaluation text (for KL divergence).

One folder per (base model fingerprint, text hash, context, batch, chunks asked for) under
``app_paths().cache / "base_logprobs"``; one compressed ``.npz`` per chunk (see
:class:`qtapp.core.evaluate.logprobs.BaseRows`) plus ``meta.json``. A chunk file is written as
``.part`` and renamed, so an interrupted run leaves only whole chunks behind and the next run
resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from qtapp.core.app.paths import app_paths
from qtapp.core.evaluate.logprobs import BaseRows

CACHE_VERSION = 1
_SAMPLE = 1 << 20


def cache_root() -> Path:
    return app_paths().cache / "base_logprobs"


def model_fingerprint(path: str | Path) -> str:
    """Size plus the first and last MiB: cheap, and changes whenever the weights do."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        h.update(fh.read(_SAMPLE))
        if size > _SAMPLE:
            fh.seek(max(size - _SAMPLE, _SAMPLE))
            h.update(fh.read(_SAMPLE))
    return h.hexdigest()[:24]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class BaseCache:
    """The cached base log-probs of one (model, text, settings) combination."""

    def __init__(self, folder: Path, meta: dict[str, Any]) -> None:
        self.folder = folder
        self.meta = meta

    @classmethod
    def for_run(
        cls,
        base_model: str | Path,
        text: str,
        n_ctx: int,
        n_batch: int,
        n_chunks: int,
        eps: float,
    ) -> BaseCache:
        meta = {
            "version": CACHE_VERSION,
            "model": model_fingerprint(base_model),
            "model_name": Path(base_model).name,
            "text": text_hash(text),
            "n_ctx": int(n_ctx),
            "n_batch": int(n_batch),
            "n_chunks": int(n_chunks),
            "eps": float(eps),
        }
        key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:20]
        folder = cache_root() / key
        meta_file = folder / "meta.json"
        if meta_file.exists():
            try:
                stored = json.loads(meta_file.read_text())
                meta.update({k: v for k, v in stored.items() if k not in meta})
            except (OSError, ValueError):
                pass
        return cls(folder, meta)

    def _chunk_file(self, i: int) -> Path:
        return self.folder / f"chunk_{i:05d}.npz"

    def has_chunk(self, i: int) -> bool:
        return self._chunk_file(i).exists()

    @property
    def chunks_total(self) -> int:
        """Chunks the text gives at these settings (known once the tokens are saved)."""
        return int(self.meta.get("chunks_total", -1))

    def complete(self) -> bool:
        n = self.chunks_total
        return (
            n > 0
            and (self.folder / "tokens.npy").exists()
            and all(self.has_chunk(i) for i in range(n))
        )

    def tokens(self) -> np.ndarray | None:
        f = self.folder / "tokens.npy"
        return np.load(f) if f.exists() else None

    def save_tokens(self, tokens: np.ndarray, n_vocab: int, chunks_total: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        np.save(self.folder / "tokens.npy", tokens.astype(np.int32))
        self.meta["n_vocab"] = int(n_vocab)
        self.meta["chunks_total"] = int(chunks_total)
        (self.folder / "meta.json").write_text(json.dumps(self.meta, indent=1))

    def save_chunk(self, i: int, rows: BaseRows) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self._chunk_file(i)
        part = final.with_name(final.name + ".part")
        with part.open("wb") as fh:
            # allow_pickle is numpy's default, named so that the arrays go only to **kwds
            np.savez_compressed(fh, allow_pickle=True, **rows.to_arrays())
        os.replace(part, final)

    def load_chunk(self, i: int) -> BaseRows:
        with np.load(self._chunk_file(i)) as data:
            return BaseRows.from_arrays(dict(data))


def cache_size(root: Path | None = None) -> int:
    """Bytes used by all cached base log-probs."""
    root = root or cache_root()
    if not root.exists():
        return 0
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def clear_cache(root: Path | None = None) -> int:
    """Delete every cached base log-prob file; return the bytes freed."""
    root = root or cache_root()
    freed = cache_size(root)
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
    return freed
