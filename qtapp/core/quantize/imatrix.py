"""Importance matrices (imatrix files) in llama.cpp's two formats, read as llama-quantize does.

* GGUF (``general.type = imatrix``): per weight ``<name>.in_sum2`` (F32, ne = [n_per_row, n_mat])
  with the raw sums of squared activations and ``<name>.counts`` (F32, ne = [1, n_mat]); keys
  ``imatrix.datasets``, ``imatrix.chunk_count``, ``imatrix.chunk_size``. Each value is divided by
  its expert's count (a zero count gives 1), as ``tools/quantize`` does.
* legacy ``.dat``: int32 n_entries, then per entry int32 name length, the name, int32 ncall,
  int32 nval and nval float32 (sums already divided per call, times ncall); then optionally int32
  chunk count and a dataset name. Each value is divided by ncall.

The quantizer writes ``quantize.imatrix.*`` keys into its output: :meth:`Imatrix.kv_overrides`.
No llama.cpp here: this is plain file reading (parent and child can both use it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qtapp.core.errors import QuantLensError

KV_FILE = "quantize.imatrix.file"
KV_DATASET = "quantize.imatrix.dataset"
KV_ENTRIES = "quantize.imatrix.entries_count"
KV_CHUNKS = "quantize.imatrix.chunks_count"


@dataclass
class Imatrix:
    """``data``: weight name -> importance values, ready for ``llama_model_imatrix_data``."""

    path: str
    data: dict[str, list[float]]
    datasets: list[str] = field(default_factory=list)
    chunk_count: int = 0
    chunk_size: int = 0
    legacy: bool = False

    def kv_overrides(self) -> list[tuple[str, str | int]]:
        """The metadata ``llama-quantize`` adds to a file quantized with this matrix."""
        kvs: list[tuple[str, str | int]] = [(KV_FILE, self.path[:127])]
        if self.datasets:
            kvs.append((KV_DATASET, self.datasets[0][:127]))
        kvs.append((KV_ENTRIES, len(self.data)))
        if self.chunk_count > 0:
            kvs.append((KV_CHUNKS, self.chunk_count))
        return kvs


def _bad(path: Path, why: str) -> QuantLensError:
    return QuantLensError(
        f"{path.name} is not a usable importance matrix: {why}.",
        "Pick an imatrix file made by llama-imatrix for this model (.gguf or legacy .dat).",
    )


def load_imatrix(path: str | Path) -> Imatrix:
    """Read either format; raise :class:`QuantLensError` with a clear message on bad files."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise QuantLensError(
            f"Cannot read the imatrix file {path}: {exc.strerror or exc}.",
            "Check the path and its permissions.",
        ) from exc
    if magic == b"GGUF":
        return _load_gguf(path)
    return _load_legacy(path)


def _load_gguf(path: Path) -> Imatrix:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - gguf raises many kinds on bad files
        raise _bad(path, f"the GGUF could not be read ({exc})") from exc
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        name = tensor.name
        if name.endswith(".in_sum2"):
            sums[name[: -len(".in_sum2")]] = np.asarray(tensor.data, dtype=np.float32)
        elif name.endswith(".counts"):
            counts[name[: -len(".counts")]] = np.asarray(tensor.data, dtype=np.float32)
    if not sums:
        raise _bad(path, "it holds no '<weight>.in_sum2' tensors")
    for key in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"):
        if key not in reader.fields:
            raise _bad(path, f"the metadata key {key} is missing")
    data: dict[str, list[float]] = {}
    for name in sorted(set(sums) | set(counts)):
        if name not in sums or name not in counts:
            raise _bad(path, f"sums and counts do not match for {name}")
        values = sums[name].reshape(-1).astype(np.float64)
        cnt = np.rint(counts[name].reshape(-1)).astype(np.int64)
        if cnt.size == 0 or values.size % cnt.size:
            raise _bad(path, f"{name} has {values.size} values for {cnt.size} counts")
        per = values.reshape(cnt.size, -1)
        out = np.where(cnt[:, None] > 0, per / np.maximum(cnt[:, None], 1), 1.0)
        data[name] = out.astype(np.float32).reshape(-1).tolist()
    field_ds = reader.fields["imatrix.datasets"]
    datasets = [bytes(field_ds.parts[i]).decode("utf-8", "replace") for i in field_ds.data]

    def scalar(key: str) -> int:
        f = reader.fields[key]
        return int(f.parts[f.data[0]][0])

    return Imatrix(
        str(path),
        data,
        datasets,
        scalar("imatrix.chunk_count"),
        scalar("imatrix.chunk_size"),
        legacy=False,
    )


def _load_legacy(path: Path) -> Imatrix:
    raw = path.read_bytes()
    pos = 0

    def take(fmt: str) -> tuple[int, ...]:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(raw):
            raise _bad(path, "the file ends too early (truncated?)")
        values = struct.unpack_from(fmt, raw, pos)
        pos += size
        return values

    (n_entries,) = take("<i")
    if n_entries < 1 or n_entries > 1_000_000:
        raise _bad(path, "it is neither a GGUF imatrix nor a legacy .dat one")
    data: dict[str, list[float]] = {}
    for _ in range(n_entries):
        (length,) = take("<i")
        if length < 1 or length > 4096 or pos + length > len(raw):
            raise _bad(path, "an entry name is damaged")
        name = raw[pos : pos + length].decode("utf-8", "replace")
        pos += length
        ncall, nval = take("<ii")
        if nval < 1 or pos + 4 * nval > len(raw):
            raise _bad(path, f"entry {name} is damaged")
        values = np.frombuffer(raw, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        if ncall > 0:
            values = values / np.float32(ncall)
        data[name] = values.tolist()
    chunk_count = 0
    datasets: list[str] = []
    if pos + 4 <= len(raw):
        (chunk_count,) = take("<i")
        if pos + 4 <= len(raw):
            (length,) = take("<i")
            if 0 < length <= len(raw) - pos:
                datasets.append(raw[pos : pos + length].decode("utf-8", "replace"))
    return Imatrix(str(path), data, datasets, chunk_count, 0, legacy=True)


# -- writers ---------------------------------------------------------------------------------
_GGUF_VERSION = 3
_GGUF_ALIGN = 32  # GGUF_DEFAULT_ALIGNMENT; llama-imatrix writes no general.alignment
_T_UINT32, _T_STRING, _T_ARRAY = 4, 8, 9
_GGML_F32 = 0


def _gguf_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _pad(n: int) -> int:
    return (n + _GGUF_ALIGN - 1) // _GGUF_ALIGN * _GGUF_ALIGN


def imatrix_gguf_bytes(
    sums: dict[str, np.ndarray],
    counts: dict[str, np.ndarray],
    datasets: list[str],
    chunk_count: int,
    chunk_size: int,
) -> bytes:
    """The file ``llama-imatrix`` (``save_imatrix``, ``gguf_write_to_file``) writes, byte for byte.

    ``sums[name]``: float32, n_mat x n_per_row raw sums of squared activations; ``counts[name]``:
    n_mat activation counts. Keys in llama.cpp's order, tensors sorted by name, each
    ``<name>.in_sum2`` (ne = [n_per_row, n_mat]) then ``<name>.counts`` (ne = [1, n_mat]), F32.
    """
    kv = [
        _gguf_str("general.type") + struct.pack("<I", _T_STRING) + _gguf_str("imatrix"),
        _gguf_str("imatrix.datasets")
        + struct.pack("<IIQ", _T_ARRAY, _T_STRING, len(datasets))
        + b"".join(_gguf_str(d) for d in datasets),
        _gguf_str("imatrix.chunk_count") + struct.pack("<II", _T_UINT32, chunk_count),
        _gguf_str("imatrix.chunk_size") + struct.pack("<II", _T_UINT32, chunk_size),
    ]
    infos: list[bytes] = []
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(sums):
        values = np.ascontiguousarray(sums[name], dtype="<f4")
        cnt = np.asarray(counts[name]).astype("<f4").reshape(-1)
        n_mat = cnt.size
        if n_mat == 0 or values.size == 0 or values.size % n_mat:
            continue  # llama-imatrix stores only entries with data (nval > 0 and nmat > 0)
        per_row = values.size // n_mat
        for tname, ne, blob in (
            (f"{name}.in_sum2", (per_row, n_mat), values.tobytes()),
            (f"{name}.counts", (1, n_mat), cnt.tobytes()),
        ):
            n_dims = 2 if ne[1] > 1 else 1  # ggml_n_dims: trailing 1s dropped, at least 1
            infos.append(
                _gguf_str(tname)
                + struct.pack("<I", n_dims)
                + struct.pack(f"<{n_dims}q", *ne[:n_dims])
                + struct.pack("<iQ", _GGML_F32, offset)
            )
            padded = _pad(len(blob))
            blobs.append(blob + bytes(padded - len(blob)))
            offset += padded
    head = b"GGUF" + struct.pack("<Iqq", _GGUF_VERSION, len(infos), len(kv))
    meta = head + b"".join(kv) + b"".join(infos)
    return meta + bytes(_pad(len(meta)) - len(meta)) + b"".join(blobs)


def write_imatrix_gguf(
    path: str | Path,
    sums: dict[str, np.ndarray],
    counts: dict[str, list[int]] | dict[str, np.ndarray],
    dataset: str | list[str] = "test.txt",
    chunk_count: int = 1,
    chunk_size: int = 512,
) -> Path:
    """Write an imatrix GGUF exactly as ``llama-imatrix`` lays it out (raw sums and counts).

    ``sums[name]`` has n_mat * n_per_row values; ``counts[name]`` has n_mat integers.
    """
    path = Path(path)
    datasets = [dataset] if isinstance(dataset, str) else list(dataset)
    data = imatrix_gguf_bytes(
        {k: np.asarray(v, dtype=np.float32) for k, v in sums.items()},
        {k: np.asarray(v) for k, v in counts.items()},
        datasets,
        chunk_count,
        chunk_size,
    )
    path.write_bytes(data)
    return path


def write_imatrix_dat(
    path: str | Path,
    values: dict[str, np.ndarray],
    ncall: int = 1,
    chunk_count: int = 1,
    dataset: str = "test.txt",
) -> Path:
    """Write a legacy ``.dat`` imatrix (values are stored times ``ncall``, as llama.cpp did)."""
    path = Path(path)
    parts = [struct.pack("<i", len(values))]
    for name, vals in values.items():
        encoded = name.encode()
        arr = np.asarray(vals, dtype="<f4") * np.float32(ncall)
        parts += [
            struct.pack("<i", len(encoded)),
            encoded,
            struct.pack("<ii", ncall, arr.size),
            arr.astype("<f4").tobytes(),
        ]
    ds = dataset.encode()
    parts += [struct.pack("<i", chunk_count), struct.pack("<i", len(ds)), ds]
    path.write_bytes(b"".join(parts))
    return path


def random_imatrix_for(model: str | Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible importance values (positive) for every 2-D weight of ``model``: name -> values."""
    from gguf import GGUFReader

    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for tensor in GGUFReader(model).tensors:
        shape = [int(x) for x in tensor.shape]
        if len(shape) < 2 or not tensor.name.endswith(".weight"):
            continue
        n_mat = shape[2] if len(shape) > 2 else 1
        out[tensor.name] = rng.uniform(0.1, 2.0, size=shape[0] * n_mat).astype(np.float32)
    return out
