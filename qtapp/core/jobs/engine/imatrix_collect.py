"""The collector of :mod:`qtapp.core.jobs.engine.imatrix`: llama-imatrix's ``collect_imatrix``.

``ggml_tensor`` is read through ctypes with the pinned ggml.h layout (checked against
``ggml_tensor_overhead`` at start); activations in host memory are read in place, others are
copied with ``ggml_backend_tensor_get`` (a GPU build), as the reference does.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from qtapp.core.errors import QuantLensError
from qtapp.core.jobs.engine.llama_session import LlamaSession

_GGML_TYPE_F32 = 0
_MIN_ROWS = 16  # llama-imatrix ignores dense products of fewer rows


class GgmlTensor(ctypes.Structure):
    """``struct ggml_tensor`` of the pinned ggml.h (GGML_MAX_DIMS 4, MAX_SRC 10, MAX_NAME 64)."""


GgmlTensor._fields_ = [  # noqa: SLF001 - ctypes needs the self-reference set after the class
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * 4),
    ("nb", ctypes.c_size_t * 4),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * 16),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(GgmlTensor) * 10),
    ("view_src", ctypes.POINTER(GgmlTensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * 64),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]
#: struct ggml_object: offs, size, next, type, padding[4]
_GGML_OBJECT_SIZE = 32
#: enum ggml_op: GGML_OP_MUL_MAT, GGML_OP_MUL_MAT_ID
_MUL_MAT_OPS = (29, 30)


class Ggml:
    """The few ggml-base functions the collector needs, from the library next to libllama."""

    def __init__(self, llama_cpp: Any) -> None:
        lib_dir = Path(llama_cpp.__file__).parent / "lib"
        candidates = sorted(lib_dir.glob("libggml-base.*")) + sorted(lib_dir.glob("ggml-base.*"))
        if not candidates:
            raise QuantLensError(
                f"llama.cpp's ggml-base library was not found in {lib_dir}.",
                "Reinstall llama-cpp-python (pip install --force-reinstall llama-cpp-python).",
            )
        lib = ctypes.CDLL(str(candidates[0]))
        lib.ggml_backend_tensor_get.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
        ]
        lib.ggml_backend_tensor_get.restype = None
        lib.ggml_backend_buffer_is_host.argtypes = [ctypes.c_void_p]
        lib.ggml_backend_buffer_is_host.restype = ctypes.c_bool
        lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
        lib.ggml_nbytes.restype = ctypes.c_size_t
        lib.ggml_op_name.argtypes = [ctypes.c_int]
        lib.ggml_op_name.restype = ctypes.c_char_p
        lib.ggml_tensor_overhead.restype = ctypes.c_size_t
        self.lib = lib
        #: llama_context_params.cb_eval's own function type (ctypes wants that exact one)
        self.callback_type = llama_cpp.ggml_backend_sched_eval_callback
        overhead = int(lib.ggml_tensor_overhead())
        if overhead != _GGML_OBJECT_SIZE + ctypes.sizeof(GgmlTensor):
            raise QuantLensError(
                "This llama.cpp's ggml_tensor layout differs from the one QuantLens reads "
                f"({overhead} != {_GGML_OBJECT_SIZE + ctypes.sizeof(GgmlTensor)} bytes).",
                "Install the llama-cpp-python version QuantLens pins.",
            )
        # GGML_OP_MUL_MAT and _ID in the pinned ggml.h; names checked, never read past the
        # pinned GGML_OP_COUNT (ggml_op_name indexes a fixed table)
        self.op_mul_mat, self.op_mul_mat_id = _MUL_MAT_OPS
        if (lib.ggml_op_name(self.op_mul_mat), lib.ggml_op_name(self.op_mul_mat_id)) != (
            b"MUL_MAT",
            b"MUL_MAT_ID",
        ):
            raise QuantLensError(
                "This llama.cpp numbers ggml's operations differently from the version "
                "QuantLens pins.",
                "Install the llama-cpp-python version QuantLens pins.",
            )


def filter_tensor_name(name: bytes) -> str:
    """``CUDA0#blk.0.attn_k.weight#0`` -> ``blk.0.attn_k.weight`` (llama-imatrix's rule)."""
    text = name.decode("utf-8", "replace")
    if "#" in text:
        text = text.split("#", 1)[1]
        if "#" in text:
            text = text.split("#", 1)[0]
    return text


class Collector:
    """The sums of squared activations per weight, as ``IMatrixCollector`` keeps them.

    ``stats[name] = (sums, counts)``: sums float32 n_mat x n_per_row, counts int64 n_mat.
    """

    def __init__(self, ggml: Ggml, force_copy: bool = False) -> None:
        self.ggml = ggml
        self.stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.force_copy = force_copy  # tests: take the device path (ggml_backend_tensor_get)
        self.error: BaseException | None = None
        self.calls = 0
        self.on_rows: Any = None  # called with the rows the first matrix has seen (progress)
        self._first: str | None = None
        self._rows_seen = 0
        self.callback = ggml.callback_type(self._callback)

    # -- the callback ----------------------------------------------------------------------
    def _callback(self, t_addr: int | None, ask: bool, _user: int | None) -> bool:
        if not t_addr:
            return False
        try:
            t = GgmlTensor.from_address(t_addr)
            if ask:
                return self._wanted(t)
            self._collect(t)
            return True
        except BaseException as exc:  # noqa: BLE001 - never let an exception cross into C
            if self.error is None:
                self.error = exc
            return False

    def _wanted(self, t: GgmlTensor) -> bool:
        if t.op == self.ggml.op_mul_mat_id:
            return True
        if t.op != self.ggml.op_mul_mat:
            return False
        src1 = t.src[1].contents
        if src1.ne[1] < _MIN_ROWS or src1.type != _GGML_TYPE_F32:
            return False
        return self._name(t).startswith("blk.")

    @staticmethod
    def _name(t: GgmlTensor) -> str:
        # not cached by address: graph tensors (views of weights too) reuse addresses
        return filter_tensor_name(t.src[0].contents.name)

    def _host_view(self, t: GgmlTensor, dtype: type, keep: list[Any]) -> np.ndarray:
        """``t``'s data as a numpy array of shape ne[::-1] with its strides (copied if on a GPU)."""
        nbytes = int(self.ggml.lib.ggml_nbytes(ctypes.addressof(t)))
        host = bool(t.buffer) and bool(self.ggml.lib.ggml_backend_buffer_is_host(t.buffer))
        if host and not self.force_copy and t.data:
            raw = (ctypes.c_char * nbytes).from_address(t.data)
        else:
            raw = ctypes.create_string_buffer(nbytes)
            self.ggml.lib.ggml_backend_tensor_get(ctypes.addressof(t), raw, 0, nbytes)
        keep.append(raw)
        base = np.frombuffer(memoryview(raw), dtype=np.uint8)
        return np.lib.stride_tricks.as_strided(
            base[: nbytes - nbytes % np.dtype(dtype).itemsize].view(dtype),
            shape=tuple(int(t.ne[i]) for i in (3, 2, 1, 0)),
            strides=tuple(int(t.nb[i]) for i in (3, 2, 1, 0)),
            writeable=False,
        )

    def _collect(self, t: GgmlTensor) -> None:
        self.calls += 1
        src0 = t.src[0].contents
        src1 = t.src[1].contents
        name = self._name(t)
        keep: list[Any] = []
        x = self._host_view(src1, np.float32, keep)  # [ne3, ne2, ne1, ne0]
        ne0 = int(src1.ne[0])
        if t.op == self.ggml.op_mul_mat_id:
            self._collect_moe(t, name, x, int(src0.ne[2]), ne0, keep)
        else:
            self._collect_dense(name, x, src0, src1, ne0)

    def _collect_dense(
        self, name: str, x: np.ndarray, src0: GgmlTensor, src1: GgmlTensor, ne0: int
    ) -> None:
        s02, s03 = int(src0.ne[2]), int(src0.ne[3])
        n_mat = s02 * s03
        entry = self.stats.get(name)
        if entry is None:
            entry = (np.zeros((n_mat, ne0), np.float32), np.zeros(1, np.int64))
            self.stats[name] = entry
        sums, counts = entry
        if sums.shape != (n_mat, ne0):
            raise QuantLensError(
                f"Inconsistent activation size for {name}: {sums.shape} vs {(n_mat, ne0)}.",
                "This model's graph is not one llama-imatrix can collect either.",
            )
        for i3 in range(x.shape[0]):
            for i2 in range(x.shape[1]):
                mat = (i3 % s03) * s02 + (i2 % s02)
                _accumulate(sums, mat, x[i3, i2])
        if not np.isfinite(sums).all():
            raise QuantLensError(
                f"Non-finite activations in {name}.",
                "The model produces NaN or infinite values on this text; llama-imatrix stops too.",
            )
        nrows = int(src1.ne[1]) * int(src1.ne[2]) * int(src1.ne[3])
        counts += nrows // n_mat
        if self._first is None:
            self._first = name
        if name == self._first:
            self._rows_seen += nrows // n_mat
            if self.on_rows is not None:
                self.on_rows(self._rows_seen)

    def _collect_moe(
        self, t: GgmlTensor, name: str, x: np.ndarray, n_as: int, ne0: int, keep: list[Any]
    ) -> None:
        # ids -> [n_expert_used, n_tokens]; src1 -> [ne0, n_expert_used (or 1), n_tokens]
        ids_t = t.src[2].contents
        ids = self._host_view(ids_t, np.int32, keep)[0, 0]  # [n_tokens, n_ids]
        xs = x[0]  # [n_tokens, ne11, ne0]
        n_tokens, n_ids = ids.shape
        entry = self.stats.get(name)
        if entry is None:
            entry = (np.zeros((n_as, ne0), np.float32), np.zeros(n_as, np.int64))
            self.stats[name] = entry
        sums, counts = entry
        if sums.shape != (n_as, ne0):
            raise QuantLensError(
                f"Inconsistent expert activations for {name}: {sums.shape} vs {(n_as, ne0)}.",
                "This model's graph is not one llama-imatrix can collect either.",
            )
        if n_tokens != xs.shape[0]:
            raise QuantLensError(f"Expert ids and activations disagree for {name}.")
        ne11 = xs.shape[1]
        touched = np.zeros(n_as, dtype=bool)
        for idx in range(n_ids):  # the reference's order: slot, then token
            experts = ids[:, idx]
            if experts.min(initial=0) < 0 or experts.max(initial=0) >= n_as:
                raise QuantLensError(f"Expert id out of range in {name}.")
            rows = xs[:, idx % ne11]
            for ex in np.unique(experts):
                sel = rows[experts == ex]
                _accumulate(sums, int(ex), sel)
                counts[ex] += sel.shape[0]
                touched[ex] = True
        if not np.isfinite(sums[touched]).all():
            raise QuantLensError(
                f"Non-finite activations in {name}.",
                "The model produces NaN or infinite values on this text; llama-imatrix stops too.",
            )

    # -- the result ------------------------------------------------------------------------
    def chunk_count(self, chunk_size: int) -> int:
        """``m_last_chunk``: the largest count over all entries, in whole chunks."""
        top = max((int(c.max()) for _s, c in self.stats.values() if c.size), default=0)
        return top // max(1, chunk_size)


def _accumulate(sums: np.ndarray, mat: int, rows: np.ndarray) -> None:
    """``acc[j] += x[j] * x[j]`` row after row, in float32, as the reference loops."""
    if rows.shape[0] == 0:
        return
    sq = np.square(rows, dtype=np.float32)
    stacked = np.concatenate((sums[mat][None, :], sq), axis=0)
    np.add.reduce(stacked, axis=0, out=sums[mat])


class _WithEvalCallback:
    """llama-cpp-python's module, except that fresh context params carry ``cb_eval``."""

    def __init__(self, module: Any, callback: Any) -> None:
        self._module = module
        self._callback = callback

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def llama_context_default_params(self) -> Any:
        cparams = self._module.llama_context_default_params()
        cparams.cb_eval = self._callback
        cparams.cb_eval_user_data = None
        return cparams


class CollectingSession(LlamaSession):
    """A :class:`LlamaSession` whose contexts call ``callback`` for every graph node."""

    def __init__(self, model_path: str | Path, *, callback: Any, **kwargs: Any) -> None:
        self._eval_callback = callback
        super().__init__(model_path, **kwargs)

    def _open_context(self, n_ctx: int, n_batch: int, n_ubatch: int, n_seq: int) -> None:
        real = self.L
        self.L = _WithEvalCallback(real, self._eval_callback)  # type: ignore[assignment]
        try:
            super()._open_context(n_ctx, n_batch, n_ubatch, n_seq)
        finally:
            self.L = real
