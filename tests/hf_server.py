"""A Hugging Face-compatible Hub on 127.0.0.1 for tests: the API calls huggingface_hub makes
(model info, the repo tree with LFS sizes and sha256) and ``resolve`` downloads with the
headers it expects (X-Repo-Commit, ETag, X-Linked-Etag / X-Linked-Size, Range / Content-Range),
serving real files from disk. Faults on demand: a status (401, 404, 429, 500) or a connection
dropped after some bytes of a body, a number of times. Every request and every body byte sent is
counted, so tests can say what a plan cost."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


@dataclass
class Served:
    source: Path  # the bytes served
    sha256: str  # what the tree claims (a test may make it lie)

    @property
    def size(self) -> int:
        return self.source.stat().st_size


@dataclass
class Repo:
    repo_id: str
    commit: str
    files: dict[str, Served] = field(default_factory=dict)
    gated: bool = False


@dataclass
class Fault:
    """Answer requests whose path contains ``match`` (and whose method is ``method``, if set)
    with ``status``, or drop the connection after ``drop_after`` body bytes; ``times`` times."""

    match: str
    status: int = 0
    drop_after: int | None = None
    times: int = 1
    method: str | None = None
    hits: int = 0


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.token = "hf_test_token"
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Range
        self.body_bytes: dict[str, int] = {}  # repo file path -> bytes sent
        self.lock = threading.Lock()
        self.url = ""
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set up --------------------------------------------------------------------------------
    def add_repo(
        self, repo_id: str, files: dict[str, Path], gated: bool = False, commit: str | None = None
    ) -> Repo:
        commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
        repo = Repo(repo_id, commit, {p: Served(f, sha256_of(f)) for p, f in files.items()}, gated)
        self.repos[repo_id] = repo
        return repo

    def fault(self, match: str, **kwargs: object) -> Fault:
        f = Fault(match, **kwargs)  # type: ignore[arg-type]
        self.faults.append(f)
        return f

    def ranges(self, path_part: str) -> list[str | None]:
        return [r for m, p, r in self.requests if path_part in p and m == "GET"]

    def sent(self, repo_path: str) -> int:
        return self.body_bytes.get(repo_path, 0)

    # -- serving -------------------------------------------------------------------------------
    def start(self) -> FakeHub:
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                hub._handle(self, body=True)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server API
                hub._handle(self, body=False)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, daemon=True, name="ql-test-hub"
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.match in path and f.hits < f.times and f.method in (None, method):
                    f.hits += 1
                    return f
        return None

    def _handle(self, h: http.server.BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        with self.lock:
            self.requests.append((h.command, path, h.headers.get("Range")))
        fault = self._fault_for(h.command, path)
        if fault is not None and fault.status:
            extra = {"Retry-After": "0"} if fault.status == 429 else {}
            return _send(h, fault.status, b"fault", extra, body)
        m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?/?$", path)
        if m:
            return self._model_info(h, m[1], body)
        m = re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$", path)
        if m:
            return self._tree(h, m[1], body)
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            return self._resolve(h, m[1], m[3], body, fault)
        _send(h, 404, b"not found", {}, body)

    def _repo_or_404(self, h: http.server.BaseHTTPRequestHandler, repo_id: str, body: bool):  # noqa: ANN202
        repo = self.repos.get(repo_id)
        if repo is None:
            headers = {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}
            _send(h, 401, b'{"error":"Repository not found"}', headers, body)
        return repo

    def _model_info(self, h: http.server.BaseHTTPRequestHandler, repo_id: str, body: bool) -> None:
        repo = self._repo_or_404(h, repo_id, body)
        if repo is None:
            return
        info = {
            "_id": "x",
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": repo.commit,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "tags": ["gguf"],
            "siblings": [{"rfilename": p} for p in sorted(repo.files)],
        }
        _send(h, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)

    def _tree(self, h: http.server.BaseHTTPRequestHandler, repo_id: str, body: bool) -> None:
        repo = self._repo_or_404(h, repo_id, body)
        if repo is None:
            return
        entries: list[dict[str, object]] = []
        folders = sorted({p.rsplit("/", 1)[0] for p in repo.files if "/" in p})
        for folder in folders:
            oid = hashlib.sha1(folder.encode()).hexdigest()
            entries.append({"type": "directory", "oid": oid, "size": 0, "path": folder})
        for p, s in sorted(repo.files.items()):
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{s.sha256}\n"
            pointer += f"size {s.size}\n"
            entries.append({
                "type": "file",
                "oid": hashlib.sha1(pointer.encode()).hexdigest(),
                "size": s.size,
                "path": p,
                "lfs": {"oid": s.sha256, "size": s.size, "pointerSize": len(pointer)},
            })  # fmt: skip
        _send(h, 200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, body)

    def _resolve(
        self,
        h: http.server.BaseHTTPRequestHandler,
        repo_id: str,
        rpath: str,
        body: bool,
        fault: Fault | None,
    ) -> None:
        repo = self._repo_or_404(h, repo_id, body)
        if repo is None:
            return
        if repo.gated and h.headers.get("Authorization") != f"Bearer {self.token}":
            headers = {
                "X-Error-Code": "GatedRepo",
                "X-Error-Message": f"Access to model {repo_id} is restricted.",
            }
            return _send(h, 401, b"gated", headers, body)
        served = repo.files.get(rpath)
        if served is None:
            headers = {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"}
            return _send(h, 404, b"entry not found", headers, body)
        size = served.size
        start, end, status = 0, size - 1, 200
        rng = h.headers.get("Range")
        if rng:
            m = re.match(r"bytes=(\d+)-(\d*)$", rng)
            if m is None or int(m[1]) >= size:
                return _send(h, 416, b"", {"Content-Range": f"bytes */{size}"}, body)
            start, end, status = int(m[1]), min(int(m[2] or size - 1), size - 1), 206
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "X-Repo-Commit": repo.commit,
            "ETag": f'"{served.sha256}"',
            "X-Linked-Etag": f'"{served.sha256}"',
            "X-Linked-Size": str(size),
            "Content-Length": str(end - start + 1),
        }
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if not body:
            return
        limit = end - start + 1
        drop = fault.drop_after if fault is not None and fault.drop_after is not None else None
        if drop is not None:
            limit = min(limit, drop)
        sent = 0
        try:
            with served.source.open("rb") as fh:
                fh.seek(start)
                while sent < limit:
                    chunk = fh.read(min(1 << 16, limit - sent))
                    if not chunk:
                        break
                    h.wfile.write(chunk)
                    sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self.lock:
                self.body_bytes[rpath] = self.body_bytes.get(rpath, 0) + sent
        if drop is not None:
            h.close_connection = True
            try:
                h.wfile.flush()
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _send(
    h: http.server.BaseHTTPRequestHandler,
    status: int,
    payload: bytes,
    headers: dict[str, str],
    body: bool,
) -> None:
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(payload)))
    h.end_headers()
    if body:
        h.wfile.write(payload)


def split_model(src: Path, folder: Path, stem: str, parts: int = 2) -> list[Path]:
    """``src`` as a llama.cpp split set (``stem-00001-of-0000N.gguf``): the metadata in the
    first shard, the tensors spread over all, ``split.*`` keys in each."""
    from gguf import GGUFReader, GGUFWriter

    reader = GGUFReader(src)
    names = [t.name for t in reader.tensors]
    share = -(-len(names) // parts)
    out = []
    for i in range(1, parts + 1):
        mine = set(names[(i - 1) * share : i * share])
        path = folder / f"{stem}-{i:05d}-of-{parts:05d}.gguf"
        path.parent.mkdir(parents=True, exist_ok=True)
        arch = str(reader.fields["general.architecture"].contents())
        w = GGUFWriter(str(path), arch)
        for f in reader.fields.values():
            if i > 1 or f.name.startswith("GGUF.") or f.name == "general.architecture":
                continue
            sub = f.types[-1] if len(f.types) > 1 else None
            w.add_key_value(f.name, f.contents(), f.types[0], sub)
        w.add_uint16("split.no", i - 1)
        w.add_uint16("split.count", parts)
        w.add_int32("split.tensors.count", len(names))
        for t in reader.tensors:
            if t.name in mine:
                w.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        out.append(path)
    return out


@pytest.fixture
def hf_hub() -> Iterator[FakeHub]:
    """The Hub on 127.0.0.1 for one test (import this fixture into a test module)."""
    hub = FakeHub().start()
    yield hub
    hub.stop()
