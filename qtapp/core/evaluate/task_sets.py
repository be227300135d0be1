"""The standard task files, fetched only when the user has switched the network on.

The sources are the ones the pinned llama.cpp's own download scripts use
(``scripts/get-hellaswag.sh`` and ``scripts/get-winogrande.sh``). The multiple-choice sets
(MMLU, ARC, TruthfulQA) are binary files from the Hugging Face dataset
``ikawrakow/validation-datasets-for-llama.cpp``: download one there and open it as your own file.

A download goes to ``<name>.part`` beside its final name, is checked to be a task file of the
expected format, and only then takes its final name: nothing incomplete is ever offered.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtapp.core.errors import QuantLensError

__all__ = ["STANDARD_SETS", "TaskSet", "fetch_task_set", "task_sets_text"]

SOURCES_NOTE = (
    "Standard sets: HellaSwag (llama.cpp's scripts/get-hellaswag.sh), Winogrande (the Hugging "
    "Face dataset ikawrakow/winogrande-eval-for-llama.cpp), MMLU / ARC / TruthfulQA in the "
    "multiple-choice binary format (ikawrakow/validation-datasets-for-llama.cpp)."
)
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EIO}
NETWORK_OFF_HINT = (
    "Switch on 'Allow downloads' in Settings (or pass --online), or download the file yourself "
    "and open it."
)


@dataclass(frozen=True)
class TaskSet:
    key: str
    kind: str  # the format: "hellaswag" | "winogrande" | "mc"
    title: str
    filename: str
    url: str = ""  # a plain URL, or empty for a Hugging Face dataset file
    repo: str = ""  # a Hugging Face dataset holding ``filename``

    def source_url(self, endpoint: str | None = None) -> str:
        if self.url:
            return self.url
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.repo, self.filename, repo_type="dataset", endpoint=endpoint)


STANDARD_SETS: dict[str, TaskSet] = {
    "hellaswag": TaskSet(
        "hellaswag",
        "hellaswag",
        "HellaSwag validation set (10,042 tasks)",
        "hellaswag_val_full.txt",
        url="https://raw.githubusercontent.com/klosax/hellaswag_text_data/main/hellaswag_val_full.txt",
    ),
    "winogrande": TaskSet(
        "winogrande",
        "winogrande",
        "Winogrande debiased evaluation set",
        "winogrande-debiased-eval.csv",
        repo="ikawrakow/winogrande-eval-for-llama.cpp",
    ),
}


def task_sets_text() -> str:
    return "\n".join(f"{s.key}: {s.title} ({s.source_url()})" for s in STANDARD_SETS.values())


def fetch_task_set(
    key: str,
    dest_dir: str | Path,
    online: bool,
    progress: Callable[[float, str], object] | None = None,
    endpoint: str | None = None,
) -> Path:
    """Download a standard set into ``dest_dir`` (kept: a second call reuses it).

    ``online`` is the user's explicit permission (the setting, or ``--online``): without it
    nothing touches the network. A partial download resumes from its ``.part`` file."""
    if key not in STANDARD_SETS:
        raise QuantLensError(
            f"No standard task set called {key!r}.", f"Known: {', '.join(STANDARD_SETS)}."
        )
    task_set = STANDARD_SETS[key]
    dest = Path(dest_dir) / task_set.filename
    if dest.is_file():
        return dest
    if not online:
        raise QuantLensError(f"Downloading {task_set.title} needs the network, which is off.",
                             NETWORK_OFF_HINT)  # fmt: skip
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    url = task_set.source_url(endpoint)
    try:
        _download(url, part, progress)
    except Exception as exc:  # noqa: BLE001 - HTTP and connection errors of huggingface_hub
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRORS:
            hint = "Free some disk space or choose another folder."
            raise QuantLensError(f"Could not write {part}: {exc.strerror}", hint) from None
        raise QuantLensError(
            f"Could not download {url}: {exc}",
            "Check the connection and try again; the part already fetched is kept.",
        ) from None
    from qtapp.core.evaluate.tasks import detect_task_kind

    try:
        kind = detect_task_kind(part)
    except QuantLensError as exc:
        part.unlink(missing_ok=True)
        raise QuantLensError(f"{url} did not give a task file: {exc.message}",
                             "Try again later, or download it yourself.") from None  # fmt: skip
    if kind != task_set.kind:
        part.unlink(missing_ok=True)
        raise QuantLensError(
            f"{url} gave a {kind} file, not {task_set.kind}.", "Download it yourself."
        )
    os.replace(part, dest)
    return dest


def _download(url: str, part: Path, progress: Callable[[float, str], object] | None) -> None:
    """huggingface_hub's resumable GET (proxies, retries, HF_TOKEN), its progress bar routed
    to ``progress``."""
    from huggingface_hub.file_download import http_get

    from qtapp.core.remote.source import progress_tqdm

    def on_step(bar: Any, _step: int) -> None:
        if progress is not None and bar.total:
            progress(min(1.0, bar.n / bar.total), f"{bar.n / 2**20:.1f} MiB")

    resume = part.stat().st_size if part.exists() else 0
    with part.open("ab") as fh:
        http_get(url, fh, resume_size=resume, tqdm_class=progress_tqdm(on_step))
