"""Split GGUF models: ``name-00001-of-00003.gguf`` and its sibling shards.

One pattern for discovery (grouping a folder's files), the model reader (reading every shard)
and the fingerprint (hashing the first shard, sizing all), so they always agree on what a split
model is.
"""

from __future__ import annotations

import re
from pathlib import Path

SPLIT_RE = re.compile(
    r"^(?P<stem>.*)-(?P<idx>\d{5})-of-(?P<n>\d{5})(?P<ext>\.gguf)$", re.IGNORECASE
)


def split_parts(path: Path) -> list[Path]:
    """Every shard of the split model ``path`` belongs to, existing or not (``[path]`` if it is
    not a split name); the names keep ``path``'s spelling of the extension."""
    m = SPLIT_RE.match(path.name)
    if not m:
        return [path]
    n = int(m["n"])
    return [path.with_name(f"{m['stem']}-{i:05d}-of-{m['n']}{m['ext']}") for i in range(1, n + 1)]
