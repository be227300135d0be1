"""One split-name rule for discovery, the model reader and the fingerprint."""

from __future__ import annotations

from pathlib import Path

from qtapp.core.gguf.shards import SPLIT_RE, split_parts


def test_split_parts_lists_every_shard_in_the_files_spelling(tmp_path: Path) -> None:
    second = tmp_path / "Big-Model-Q4_K_M-00002-of-00003.GGUF"
    assert [p.name for p in split_parts(second)] == [
        f"Big-Model-Q4_K_M-0000{i}-of-00003.GGUF" for i in (1, 2, 3)
    ]
    m = SPLIT_RE.match(second.name)
    assert m is not None and (m["stem"], int(m["idx"]), int(m["n"])) == ("Big-Model-Q4_K_M", 2, 3)


def test_a_plain_file_is_its_own_only_part(tmp_path: Path) -> None:
    plain = tmp_path / "model-00001.gguf"
    assert split_parts(plain) == [plain] and SPLIT_RE.match(plain.name) is None
