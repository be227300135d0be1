"""Where a remote model is: ``owner/name``, ``hf://owner/name[@rev][/FILE]`` or an https link to
a ``.gguf`` file on a Hugging Face host; the endpoint, token and cache folder to use; and the one
translation of ``huggingface_hub``'s errors into a line that says what to do."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from qtapp.core.errors import QuantLensError

__all__ = [
    "progress_tqdm",
    "NETWORK_OFF_HINT",
    "RemoteRef",
    "hub_cache_dir",
    "hub_endpoint",
    "hub_errors",
    "is_remote",
    "parse_source",
    "require_online",
]

NETWORK_OFF_HINT = (
    "Switch on 'Allow downloads' in Settings (or pass --online); QuantLens then reads only the "
    "files' headers until you choose one to download."
)
DEFAULT_ENDPOINT = "https://huggingface.co"
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_REPO_RE = re.compile(rf"^(?P<repo>{_NAME}/{_NAME})(?:@(?P<rev>[^/\s]+))?(?:/(?P<path>.+))?$")
_URL_PATH_RE = re.compile(
    rf"^/(?P<repo>{_NAME}/{_NAME})(?:/(?:resolve|blob)/(?P<rev>[^/]+)/(?P<path>.+))?/?$"
)


@dataclass(frozen=True)
class RemoteRef:
    """A repo (and maybe one file in it) on a Hub endpoint."""

    repo_id: str
    revision: str = "main"
    path: str | None = None  # a file in the repo (any shard of a split set)
    endpoint: str | None = None  # None: HF_ENDPOINT, else huggingface.co

    @property
    def url(self) -> str:
        return f"{hub_endpoint(self.endpoint)}/{self.repo_id}"

    def __str__(self) -> str:
        rev = "" if self.revision == "main" else f"@{self.revision}"
        return f"hf://{self.repo_id}{rev}" + (f"/{self.path}" if self.path else "")


def is_remote(text: str) -> bool:
    """Whether ``text`` names a remote model rather than a local path."""
    return text.startswith(("hf://", "https://", "http://"))


def parse_source(text: str, endpoint: str | None = None) -> RemoteRef:
    """``owner/name``, ``hf://owner/name[@rev][/FILE]`` or ``https://host/owner/name/resolve/
    REV/FILE.gguf`` (``blob`` links too) -> a :class:`RemoteRef`; bad text: QuantLensError."""
    raw = text.strip()
    usage = (
        "Write owner/name (e.g. unsloth/gemma-3-270m-it-GGUF), hf://owner/name/FILE.gguf, or a "
        "https://huggingface.co/owner/name/resolve/main/FILE.gguf link."
    )
    if raw.startswith(("https://", "http://")):
        parts = urlsplit(raw)
        m = _URL_PATH_RE.match(unquote(parts.path))
        if not parts.netloc or m is None:
            raise QuantLensError(f"{raw} is not a link to a Hugging Face repo or file.", usage)
        if m["path"] is not None and not m["path"].lower().endswith(".gguf"):
            raise QuantLensError(f"{raw} does not link to a .gguf file.", usage)
        return RemoteRef(
            m["repo"], m["rev"] or "main", m["path"], f"{parts.scheme}://{parts.netloc}"
        )
    body = raw.removeprefix("hf://").strip("/")
    m = _REPO_RE.match(body)
    if m is None or ".." in body.split("/"):
        raise QuantLensError(f"{raw!r} does not name a Hugging Face repo.", usage)
    path = m["path"]
    if path is not None and not path.lower().endswith(".gguf"):
        raise QuantLensError(f"{raw} names {path}, which is not a .gguf file.", usage)
    return RemoteRef(m["repo"], m["rev"] or "main", path, endpoint)


def hub_endpoint(endpoint: str | None = None) -> str:
    """The Hub to ask: ``endpoint``, else ``HF_ENDPOINT`` (read now, not at import), else
    huggingface.co."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_cache_dir() -> Path:
    """The Hugging Face cache, found as the Models page finds it (``HF_HUB_CACHE``,
    ``HF_HOME``, the XDG cache), so a download shows up there."""
    from qtapp.core.app.discovery import default_locations

    return next(loc.path for loc in default_locations() if loc.kind == "hf")


def require_online(online: bool, what: str) -> None:
    if not online:
        raise QuantLensError(f"{what} needs the network, which is off.", NETWORK_OFF_HINT)


@contextmanager
def hub_errors(ref: RemoteRef, token: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub's and httpx's errors into one QuantLensError line each."""
    import httpx2
    from huggingface_hub import errors

    endpoint = hub_endpoint(ref.endpoint)
    try:
        yield
    except QuantLensError:
        raise
    except errors.OfflineModeIsEnabled:
        raise QuantLensError(
            "HF_HUB_OFFLINE is set, so the Hugging Face Hub cannot be reached.",
            "Unset HF_HUB_OFFLINE to read a repo.",
        ) from None
    except errors.GatedRepoError:
        have = token or _env_token()
        raise QuantLensError(
            f"{ref.repo_id} is gated: "
            + (
                "your token has no access to it."
                if have
                else "it needs a token of an account that accepted its conditions."
            ),  # fmt: skip
            f"Accept the conditions on {endpoint}/{ref.repo_id}, then set HF_TOKEN (or run "
            "`hf auth login`) and try again.",
        ) from None
    except errors.RevisionNotFoundError:
        raise QuantLensError(
            f"{ref.repo_id} has no revision {ref.revision!r}.",
            "Use a branch, tag or commit of the repo (or leave it out for main).",
        ) from None
    except errors.RemoteEntryNotFoundError:
        raise QuantLensError(
            f"{ref.repo_id} has no file {ref.path}.",
            f"List its GGUF files with: quantlens plan hf://{ref.repo_id} --online",
        ) from None
    except errors.RepositoryNotFoundError:
        raise QuantLensError(
            f"There is no model repo {ref.repo_id} on {endpoint} (or it is private).",
            "Check the name (owner/name); for a private repo set HF_TOKEN.",
        ) from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "an error"
        raise QuantLensError(
            f"{endpoint} answered {status} for {ref.repo_id}, even after retrying.",
            "Try again later (the Hub may be busy or rate-limiting you).",
        ) from None
    except (httpx2.TransportError, ConnectionError, TimeoutError) as exc:
        raise QuantLensError(
            f"Cannot reach {endpoint}: {exc or type(exc).__name__}.",
            "Check the network connection (and HTTPS_PROXY if you use a proxy), then try again.",
        ) from None


def _env_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def progress_tqdm(on_step: Callable[[Any, int], object]) -> Any:
    """A tqdm class for huggingface_hub's GETs (``tqdm_class=``) that calls ``on_step(bar,
    bytes)`` instead of drawing a bar; ``bar.n`` counts the bytes (from the resumed size) and
    ``bar.total`` is the file's size. It starts no tqdm monitor thread: nothing outlives a
    download."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    class Report(tqdm):  # type: ignore[misc]
        monitor_interval = 0

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            step = int(n or 0)
            self.n += step
            on_step(self, step)
            return None

    return Report
