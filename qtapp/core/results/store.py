"""The results store: every plan, quantization and evaluation, with its metrics and curves.

SQLite in WAL mode in the data folder. Curves are stored as float32 arrays in blobs, one row per
``add_points`` call (so a live job appends cheaply and a kill loses at most the last call), and
compacted into one row per series when the run ends: the Compare view reads 100 runs of 1,000
points in one query. The schema carries a version; :data:`MIGRATIONS` upgrades older files.

Usage::

    store = ResultsStore.open()
    run_id = store.begin_run("eval", model_path, "Q4_K_M", settings={"ctx": 512})
    store.add_points(run_id, "ppl", xs, ys, errs)
    store.finish_run(run_id, "finished", metrics={"ppl": 15.17, "ppl_err": 0.2})
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtapp.core.app.paths import app_paths
from qtapp.core.errors import QuantLensError
from qtapp.core.gguf.fingerprint import display_name, model_info

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
KINDS = ("plan", "quantize", "eval", "tasks", "versus")
STATES = ("running", "finished", "partial", "failed", "interrupted", "cancelled")
END_STATES = ("finished", "partial", "failed", "cancelled", "interrupted")

_V2_RUN_COLUMNS = {
    "model_fingerprint": "TEXT NOT NULL DEFAULT ''",
    "model_name": "TEXT NOT NULL DEFAULT ''",
    "model_bytes": "INTEGER",
    "bpw": "REAL",
    "recipe": "TEXT",
    "hardware": "TEXT",
    "llama_version": "TEXT NOT NULL DEFAULT ''",
    "settings": "TEXT",
    "message": "TEXT NOT NULL DEFAULT ''",
    "note": "TEXT NOT NULL DEFAULT ''",
    "pid": "INTEGER",
    "finished": "REAL",
}

#: version 1, the first release: kept verbatim, a new database is created by running every step
SCHEMA_V1 = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    model_path TEXT NOT NULL,
    label TEXT NOT NULL,
    state TEXT NOT NULL,
    metrics TEXT,
    created REAL NOT NULL
);
CREATE TABLE points (run_id INTEGER NOT NULL, series TEXT NOT NULL, x REAL, y REAL, err REAL);
INSERT INTO schema_version VALUES (1);
"""


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    """Add the identity, provenance and lifecycle columns; move points into float32 blobs."""
    for name, decl in _V2_RUN_COLUMNS.items():
        db.execute(f"ALTER TABLE runs ADD COLUMN {name} {decl}")
    db.execute(
        """CREATE TABLE curve_chunks (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            series TEXT NOT NULL, seq INTEGER NOT NULL, n INTEGER NOT NULL,
            xs BLOB NOT NULL, ys BLOB NOT NULL, errs BLOB,
            PRIMARY KEY (run_id, series, seq))"""
    )
    db.execute("CREATE INDEX runs_by_model ON runs(model_name, created)")
    groups: dict[tuple[int, str], list[tuple[float, float, float | None]]] = {}
    for run_id, series, x, y, err in db.execute(
        "SELECT run_id, series, x, y, err FROM points ORDER BY rowid"
    ):
        groups.setdefault((run_id, series), []).append((x, y, err))
    for (run_id, series), pts in groups.items():
        db.execute(
            "INSERT INTO curve_chunks VALUES (?, ?, 0, ?, ?, ?, ?)",
            (
                run_id,
                series,
                len(pts),
                *_blobs([p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]),
            ),
        )
    db.execute("DROP TABLE points")
    for run_id, path in db.execute("SELECT id, model_path FROM runs").fetchall():
        db.execute(
            "UPDATE runs SET model_name = ? WHERE id = ?", (display_name(Path(path)), run_id)
        )
        db.execute(
            "UPDATE runs SET state = 'interrupted', message = 'left running by QuantLens 1' "
            "WHERE id = ? AND state = 'running'",
            (run_id,),
        )


#: MIGRATIONS[n] upgrades a database at version n to n + 1
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_1_to_2}


@dataclass(frozen=True)
class Curve:
    """One series of a run: float32 arrays of equal length; ``errs`` may be None."""

    xs: np.ndarray
    ys: np.ndarray
    errs: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.xs.shape[0])


@dataclass(frozen=True)
class RunRecord:
    id: int
    kind: str
    model_path: str
    model_fingerprint: str
    model_name: str
    model_bytes: int | None
    bpw: float | None
    label: str
    recipe: str | None
    hardware: dict[str, Any] | None
    llama_version: str
    settings: dict[str, Any]
    metrics: dict[str, Any]
    state: str
    message: str
    note: str
    created: float
    finished: float | None
    pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> float | None:
        value = self.metrics.get(name)
        return (
            float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else None
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("extra", "pid")}


def _blobs(
    xs: Sequence[float], ys: Sequence[float], errs: Sequence[float | None] | None
) -> tuple[bytes, bytes, bytes | None]:
    import numpy as np  # here: a plan reads the store without curves, and numpy costs 0.1 s

    x = np.asarray(xs, dtype="<f4")
    y = np.asarray(ys, dtype="<f4")
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"xs and ys must be flat and equally long, got {x.shape} and {y.shape}")
    e: bytes | None = None
    if errs is not None and any(v is not None for v in errs):
        earr = np.asarray([np.nan if v is None else v for v in errs], dtype="<f4")
        if earr.shape != x.shape:
            raise ValueError("errs must be as long as xs")
        e = earr.tobytes()
    return x.tobytes(), y.tobytes(), e


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, allow_nan=True)


def _load(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _pid_alive(pid: int | None) -> bool:
    """Whether a process still runs; this process counts as alive (its runs are its own)."""
    if not pid:
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def llama_cpp_version() -> str:
    """The installed llama-cpp-python version as runs record it, e.g. "llama-cpp-python 0.3.36"."""
    from qtapp.core.hardware.llama_build import llama_cpp_python_version

    installed = llama_cpp_python_version()
    return f"llama-cpp-python {installed}" if installed else ""


def results_location() -> Path:
    """The database file the app uses (for the Settings page and the CLI)."""
    return app_paths().results_db


class ResultsStore:
    """A thread-safe handle on the results database. Qt-free; cheap to open."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.recovered_from: Path | None = None
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
            self._upgrade()
        except (OSError, sqlite3.OperationalError) as exc:
            if (
                isinstance(exc, sqlite3.OperationalError)
                and "locked" not in str(exc)
                and ("unable to open" not in str(exc))
            ):
                self._set_aside(exc)
                return
            raise QuantLensError(
                f"Cannot open the results database {self.path}: {exc}.",
                "Check that the folder exists and is writable, or point QUANTLENS_HOME "
                "at another folder.",
            ) from exc
        except sqlite3.DatabaseError as exc:
            if "newer" in str(exc):
                raise QuantLensError(
                    f"The results database {self.path} was written by a newer QuantLens.",
                    "Update QuantLens, or point QUANTLENS_HOME at another folder.",
                ) from exc
            self._set_aside(exc)

    @classmethod
    def open(cls, path: str | Path | None = None) -> ResultsStore:
        return cls(path or app_paths().results_db)

    # -- opening and schema ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def _set_aside(self, exc: Exception) -> None:
        """A damaged file is renamed, never deleted, and a fresh database takes its place."""
        aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
        log.warning("results database %s unreadable (%s); moved to %s", self.path, exc, aside)
        with contextlib.suppress(AttributeError, sqlite3.Error):
            self._db.close()
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.replace(Path(f"{aside}{suffix}"))
        self.recovered_from = aside
        self._db = self._connect()
        self._upgrade()

    def schema_version(self) -> int:
        has = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
        ).fetchone()
        if not has:
            return 0
        row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _upgrade(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                version = self.schema_version()
                if version > SCHEMA_VERSION:
                    raise sqlite3.DatabaseError(
                        f"results database is version {version}, newer than this QuantLens "
                        f"({SCHEMA_VERSION})"
                    )
                if version == 0:
                    for statement in SCHEMA_V1.strip().split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    version = 1
                while version < SCHEMA_VERSION:
                    log.info("migrating results database from version %d", version)
                    MIGRATIONS[version](self._db)
                    version += 1
                    self._db.execute("UPDATE schema_version SET version = ?", (version,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, args)
            except sqlite3.OperationalError as exc:
                if "full" in str(exc).lower():
                    raise QuantLensError(
                        f"Could not save the result: {exc}.",
                        f"Free some space on the disk holding {self.path.parent}.",
                    ) from exc
                raise

    # -- writing ----------------------------------------------------------------------------------
    def begin_run(
        self,
        kind: str,
        model_path: str | Path,
        label: str,
        recipe: str | None = None,
        hardware: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        *,
        model_name: str | None = None,
        llama_version: str | None = None,
    ) -> int:
        """Record a run that starts now (state "running"); returns its id."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        if hardware is not None and hasattr(hardware, "to_dict"):  # a HardwareReport
            hardware = hardware.to_dict()
        path = Path(model_path)
        fp, size, bpw, name = "", None, None, display_name(path)
        try:
            info = model_info(path)
            fp, size, bpw, name = info.fingerprint, info.total_bytes, info.bpw, info.name
        except OSError as exc:
            log.info("no fingerprint for %s: %s", path, exc)
        cur = self._write(
            """INSERT INTO runs (kind, model_path, label, state, metrics, created,
               model_fingerprint, model_name, model_bytes, bpw, recipe, hardware, llama_version,
               settings, pid) VALUES (?, ?, ?, 'running', '{}', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                kind,
                str(path),
                label or "",
                time.time(),
                fp,
                model_name or name,
                size,
                bpw,
                recipe,
                _json(hardware),
                llama_version if llama_version is not None else llama_cpp_version(),
                _json(settings or {}),
                os.getpid(),
            ),
        )
        return int(cur.lastrowid or 0)

    def retarget_run(self, run_id: int, model_path: str | Path) -> None:
        """Point a run at another file (a quantization that started from its source and ended
        with its output): the path, fingerprint, name, size and bits per weight follow it."""
        path = Path(model_path)
        info = model_info(path)
        self._write(
            "UPDATE runs SET model_path=?, model_fingerprint=?, model_name=?, model_bytes=?, "
            "bpw=? WHERE id=?",
            (str(path), info.fingerprint, info.name, info.total_bytes, info.bpw, run_id),
        )

    def add_points(
        self,
        run_id: int,
        series: str,
        xs: Sequence[float],
        ys: Sequence[float],
        errs: Sequence[float | None] | None = None,
    ) -> None:
        """Append points to a curve of a run (one row per call; compacted when the run ends)."""
        bx, by, be = _blobs(xs, ys, errs)
        n = len(bx) // 4
        if n == 0:
            return
        with self._lock:
            seq = self._db.execute(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM curve_chunks WHERE run_id=? AND series=?",
                (run_id, series),
            ).fetchone()[0]
            self._write(
                "INSERT INTO curve_chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, series, seq, n, bx, by, be),
            )

    def update_metrics(self, run_id: int, metrics: dict[str, Any]) -> None:
        """Merge metrics into a run (e.g. partial figures while it runs)."""
        with self._lock:
            row = self._db.execute("SELECT metrics FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            merged = {**_load(row[0], {}), **metrics}
            self._write("UPDATE runs SET metrics=? WHERE id=?", (_json(merged), run_id))

    def finish_run(
        self, run_id: int, state: str, metrics: dict[str, Any] | None = None, message: str = ""
    ) -> None:
        """End a run: its state, final metrics (merged with any earlier) and a message."""
        if state not in END_STATES:
            raise ValueError(f"state must be one of {END_STATES}, not {state!r}")
        with self._lock:
            self._write("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT metrics FROM runs WHERE id=?", (run_id,)).fetchone()
                if row is None:
                    raise KeyError(run_id)
                merged = {**_load(row[0], {}), **(metrics or {})}
                self._db.execute(
                    "UPDATE runs SET state=?, metrics=?, message=?, finished=? WHERE id=?",
                    (state, _json(merged), message, time.time(), run_id),
                )
                self._compact(run_id)
                self._write("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _compact(self, run_id: int) -> None:
        for (series,) in self._db.execute(
            "SELECT series FROM curve_chunks WHERE run_id=? GROUP BY series HAVING COUNT(*) > 1",
            (run_id,),
        ).fetchall():
            curve = self._read_series(run_id, series)
            self._db.execute(
                "DELETE FROM curve_chunks WHERE run_id=? AND series=?", (run_id, series)
            )
            errs = None if curve.errs is None else curve.errs.tobytes()
            self._db.execute(
                "INSERT INTO curve_chunks VALUES (?, ?, 0, ?, ?, ?, ?)",
                (run_id, series, len(curve), curve.xs.tobytes(), curve.ys.tobytes(), errs),
            )

    def delete_run(self, run_id: int) -> None:
        with self._lock:
            self._write("DELETE FROM runs WHERE id=?", (run_id,))

    def rename_run(self, run_id: int, label: str) -> None:
        if not label.strip():
            raise ValueError("a run's label cannot be empty")
        self._write("UPDATE runs SET label=? WHERE id=?", (label.strip(), run_id))

    def annotate_run(self, run_id: int, note: str) -> None:
        self._write("UPDATE runs SET note=? WHERE id=?", (note, run_id))

    def mark_interrupted_at_start(self) -> list[int]:
        """Runs left "running" by a process that is gone become "interrupted"; returns their ids."""
        with self._lock:
            rows = self._db.execute("SELECT id, pid FROM runs WHERE state='running'").fetchall()
            dead = [rid for rid, pid in rows if not _pid_alive(pid)]
            for rid in dead:
                self._write(
                    "UPDATE runs SET state='interrupted', finished=?, message=? WHERE id=?",
                    (
                        time.time(),
                        "QuantLens stopped while this run was going (killed or "
                        "crashed); the points saved until then are kept.",
                        rid,
                    ),
                )
                self._compact(rid)
            return dead

    def busy_elsewhere(self) -> bool:
        """True when another live QuantLens process has a run going."""
        rows = self._db.execute("SELECT pid FROM runs WHERE state='running'").fetchall()
        return any(pid != os.getpid() and _pid_alive(pid) for (pid,) in rows)

    # -- reading ----------------------------------------------------------------------------------
    _COLUMNS = (
        "id, kind, model_path, model_fingerprint, model_name, model_bytes, bpw, label, "
        "recipe, hardware, llama_version, settings, metrics, state, message, note, "
        "created, finished, pid"
    )

    def _record(self, row: Sequence[Any]) -> RunRecord:
        (
            rid,
            kind,
            path,
            fp,
            name,
            size,
            bpw,
            label,
            recipe,
            hw,
            llv,
            settings,
            metrics,
            state,
            message,
            note,
            created,
            finished,
            pid,
        ) = row
        return RunRecord(
            id=rid,
            kind=kind,
            model_path=path,
            model_fingerprint=fp,
            model_name=name,
            model_bytes=size,
            bpw=bpw,
            label=label,
            recipe=recipe,
            hardware=_load(hw, None),
            llama_version=llv,
            settings=_load(settings, {}),
            metrics=_load(metrics, {}),
            state=state,
            message=message,
            note=note,
            created=created,
            finished=finished,
            pid=pid,
        )

    def list_runs(self, model: str | None = None, kind: str | None = None) -> list[RunRecord]:
        """Runs, oldest first. ``model`` matches a fingerprint, or part of a name or path."""
        sql, args = f"SELECT {self._COLUMNS} FROM runs WHERE 1", []
        if model:
            sql += (
                " AND (model_fingerprint = ? OR model_name LIKE ? OR model_path LIKE ?"
                " OR label LIKE ?)"
            )
            like = f"%{model}%"
            args += [model, like, like, like]
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created, id", args).fetchall()
        return [self._record(r) for r in rows]

    def get_run(self, run_id: int) -> RunRecord:
        with self._lock:
            row = self._db.execute(
                f"SELECT {self._COLUMNS} FROM runs WHERE id=?", (run_id,)
            ).fetchone()
        if row is None:
            raise KeyError(f"no run {run_id}")
        return self._record(row)

    def _read_series(self, run_id: int, series: str) -> Curve:
        rows = self._db.execute(
            "SELECT xs, ys, errs FROM curve_chunks WHERE run_id=? AND series=? ORDER BY seq",
            (run_id, series),
        ).fetchall()
        return _join(rows)

    def curves(self, run_id: int) -> dict[str, Curve]:
        return self.curves_many([run_id]).get(run_id, {})

    def curves_many(self, run_ids: Iterable[int]) -> dict[int, dict[str, Curve]]:
        """Every curve of many runs in one query (what the Compare view draws)."""
        ids = list(run_ids)
        out: dict[int, dict[str, Curve]] = {}
        if not ids:
            return out
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT run_id, series, xs, ys, errs FROM curve_chunks WHERE run_id IN ({marks})"
                " ORDER BY run_id, series, seq",
                ids,
            ).fetchall()
        grouped: dict[tuple[int, str], list[tuple[bytes, bytes, bytes | None]]] = {}
        for run_id, series, xs, ys, errs in rows:
            grouped.setdefault((run_id, series), []).append((xs, ys, errs))
        for (run_id, series), chunks in grouped.items():
            out.setdefault(run_id, {})[series] = _join(chunks)
        return out


def _join(chunks: Sequence[tuple[bytes, bytes, bytes | None]]) -> Curve:
    import numpy as np

    if not chunks:
        empty = np.zeros(0, dtype=np.float32)
        return Curve(empty, empty, None)
    xs = np.concatenate([np.frombuffer(c[0], dtype="<f4") for c in chunks])
    ys = np.concatenate([np.frombuffer(c[1], dtype="<f4") for c in chunks])
    errs = None
    if any(c[2] is not None for c in chunks):
        errs = np.concatenate(
            [
                np.frombuffer(c[2], dtype="<f4")
                if c[2] is not None
                else np.full(len(c[0]) // 4, np.nan, dtype="<f4")
                for c in chunks
            ]
        )
    return Curve(xs, ys, errs)
