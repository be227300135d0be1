"""A llama.cpp model and context opened the way llama.cpp's own tools open them.

Only the low-level API: ``llama_decode`` with a hand-filled ``llama_batch`` (logits requested
only where they are scored) and a numpy view on the logits buffer, so nothing is copied.
Context settings are llama.cpp's ``common_params`` defaults (flash attention auto, ``swa_full``
off, n_batch 2048, n_ubatch 512), not llama-cpp-python's high-level ones.
Runs only inside the worker child.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np

from qtapp.core.errors import QuantLensError

log = logging.getLogger(__name__)


class Aborted(Exception):
    """The parent asked the job to stop (SIGTERM); raised between or inside decodes."""


class AbortFlag:
    """Set by SIGTERM; read by llama.cpp's abort callback and between decodes."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.event.set())

    def check(self) -> None:
        if self.event.is_set():
            raise Aborted()


def default_threads() -> int:
    """llama.cpp's default: the number of physical cores (approximated by the affinity set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def cpu_has_amx() -> bool:
    """Intel AMX present. llama.cpp's AMX repack of quantized weights (this pinned build)
    segfaults in llama_decode on such CPUs, so QuantLens turns the extra buffer types off there."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    except OSError:
        pass
    return False


def gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


class _TpParams(ctypes.Structure):
    _fields_ = [
        ("cpumask", ctypes.c_bool * 512),
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


class _ThreadPool:
    """A persistent ggml CPU threadpool attached to a context, as llama.cpp's tools do
    (``common_threadpools::init``, polling level 50); without it ggml makes one per graph."""

    def __init__(self, llama_cpp: Any, ctx: Any, n_threads: int) -> None:
        self.ptr = None
        self._free = None
        try:
            lib_dir = Path(llama_cpp.__file__).parent / "lib"
            ggml = ctypes.CDLL(str(next(lib_dir.glob("libggml-base.so*"))))
            cpu = ctypes.CDLL(str(next(lib_dir.glob("libggml-cpu.so*"))))
            llama = llama_cpp.llama_cpp._lib
        except (OSError, StopIteration, AttributeError) as exc:
            log.info("no explicit threadpool: %s", exc)
            return
        ggml.ggml_threadpool_params_default.restype = _TpParams
        ggml.ggml_threadpool_params_default.argtypes = [ctypes.c_int]
        cpu.ggml_threadpool_new.restype = ctypes.c_void_p
        cpu.ggml_threadpool_new.argtypes = [ctypes.POINTER(_TpParams)]
        cpu.ggml_threadpool_free.argtypes = [ctypes.c_void_p]
        llama.llama_attach_threadpool.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        llama.llama_attach_threadpool.restype = None
        params = ggml.ggml_threadpool_params_default(int(n_threads))
        params.poll = 50
        self.ptr = cpu.ggml_threadpool_new(ctypes.byref(params))
        if self.ptr:
            self._free = cpu.ggml_threadpool_free
            llama.llama_attach_threadpool(ctx, self.ptr, None)

    def free(self) -> None:
        if self.ptr and self._free is not None:
            self._free(self.ptr)
        self.ptr = None


class _BuftOverride(ctypes.Structure):
    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


#: llama.cpp's ``LLM_FFN_EXPS_REGEX`` (common/common.h): a block's routed-expert tensors
FFN_EXPS_REGEX = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"


def _cpu_moe_overrides(llama_cpp: Any, n_cpu_moe: int) -> Any:
    """``--n-cpu-moe N`` as llama.cpp's tools build it: the expert tensors of the first N
    blocks in the CPU buffer type, then a NULL-terminated end."""
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    cpu = ctypes.CDLL(str(next(lib_dir.glob("libggml-cpu.so*"))))
    cpu.ggml_backend_cpu_buffer_type.restype = ctypes.c_void_p
    buft = cpu.ggml_backend_cpu_buffer_type()
    arr = (_BuftOverride * (n_cpu_moe + 1))()
    for i in range(n_cpu_moe):
        arr[i].pattern = f"blk\\.{i}{FFN_EXPS_REGEX}".encode()
        arr[i].buft = buft
    return arr


class LlamaSession:
    """One model with one context. Use as a context manager; everything is freed on exit."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int,
        n_batch: int = 2048,
        n_ubatch: int = 512,
        n_seq: int = 1,
        threads: int | None = None,
        n_gpu_layers: int | None = None,
        abort: AbortFlag | None = None,
        repack: bool | None = None,
        abort_in_decode: bool = True,
        kv_unified: bool = False,
        n_cpu_moe: int = 0,
    ) -> None:
        import llama_cpp

        self.L = llama_cpp
        self.path = Path(model_path)
        if not self.path.is_file():
            raise QuantLensError(
                f"Model file not found: {self.path}", "Choose an existing .gguf file."
            )
        self.abort = abort or AbortFlag()
        # llama.cpp calls the abort callback after every graph node: ~1 ms per token in Python,
        # 5 % of tg128 on Gemma 270M, so speed runs check the flag only between decodes
        self.abort_in_decode = abort_in_decode
        self.use_pool = os.environ.get("QUANTLENS_NO_THREADPOOL") is None
        self.threads = int(threads or default_threads())
        llama_cpp.llama_backend_init()
        mparams = llama_cpp.llama_model_default_params()
        if n_gpu_layers is None:
            n_gpu_layers = -1 if gpu_offload_supported() else 0
        mparams.n_gpu_layers = int(n_gpu_layers)
        if repack is None:
            repack = not cpu_has_amx()
        mparams.use_extra_bufts = bool(repack)
        self.repack = bool(repack)
        self.n_cpu_moe = max(0, int(n_cpu_moe))
        if self.n_cpu_moe:
            self._overrides = _cpu_moe_overrides(llama_cpp, self.n_cpu_moe)
            mparams.tensor_buft_overrides = ctypes.addressof(self._overrides[0])
        self.model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not self.model:
            raise QuantLensError(
                f"llama.cpp could not load {self.path.name}.",
                "The file may be truncated, not a GGUF model, or of an architecture this "
                "llama.cpp does not know. Check the log for llama.cpp's reason.",
            )
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.kv_unified = kv_unified  # one KV buffer shared by the sequences (task scoring)
        self._open_context(n_ctx, n_batch, n_ubatch, n_seq)
        self.n_gpu_layers = int(n_gpu_layers)

    def _open_context(self, n_ctx: int, n_batch: int, n_ubatch: int, n_seq: int) -> None:
        llama_cpp = self.L
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = int(n_ctx)
        cparams.n_batch = int(min(n_batch, n_ctx))
        cparams.n_ubatch = int(min(n_ubatch, cparams.n_batch))
        cparams.n_seq_max = int(n_seq)
        cparams.n_threads = self.threads
        cparams.n_threads_batch = self.threads
        cparams.swa_full = False  # llama.cpp's tools; llama-cpp-python defaults to True
        cparams.kv_unified = bool(getattr(self, "kv_unified", False))
        cparams.no_perf = False
        cparams.flash_attn_type = -1  # LLAMA_FLASH_ATTN_TYPE_AUTO
        if self.abort_in_decode:
            self._abort_cb = llama_cpp.ggml_abort_callback(lambda _d: self.abort.event.is_set())
            cparams.abort_callback = self._abort_cb
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            llama_cpp.llama_model_free(self.model)
            self.model = None
            raise QuantLensError(
                f"llama.cpp could not create a context of {n_ctx} tokens for {self.path.name}.",
                "Not enough memory: try a smaller context, fewer GPU layers or a smaller model.",
            )
        self._pool = _ThreadPool(llama_cpp, self.ctx, self.threads) if self.use_pool else None
        self.n_batch = int(cparams.n_batch)
        self.n_seq = int(n_seq)
        self.n_ctx = int(n_ctx)
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, self.n_seq)
        self._bind_batch()

    def reopen(self, n_ctx: int, n_batch: int = 2048, n_ubatch: int = 512, n_seq: int = 1) -> None:
        """A fresh context on the same weights (llama-bench makes one per test)."""
        self.L.llama_batch_free(self._batch)
        self._batch = None
        self.L.llama_free(self.ctx)
        self.ctx = None
        if self._pool is not None:
            self._pool.free()
        self._open_context(n_ctx, n_batch, n_ubatch, n_seq)

    # -- life ------------------------------------------------------------------------------
    def __enter__(self) -> LlamaSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        L = self.L
        if getattr(self, "_batch", None) is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "ctx", None):
            L.llama_free(self.ctx)
            self.ctx = None
        pool = getattr(self, "_pool", None)  # absent when __init__ failed before the context
        if pool is not None:
            pool.free()
            self._pool = None
        if getattr(self, "model", None):
            L.llama_model_free(self.model)
            self.model = None

    # -- text ------------------------------------------------------------------------------
    @property
    def add_bos(self) -> bool:
        return bool(self.L.llama_vocab_get_add_bos(self.vocab))

    @property
    def bos(self) -> int:
        return int(self.L.llama_vocab_bos(self.vocab))

    def tokenize(self, text: str) -> np.ndarray:
        """Tokenize like ``common_tokenize(ctx, text, add_special=true, parse_special=false)``."""
        data = text.encode("utf-8")
        n_max = len(data) + 16
        buf = (self.L.llama_token * n_max)()
        n: int = self.L.llama_tokenize(self.vocab, data, len(data), buf, n_max, True, False)
        if n < 0:
            buf = (self.L.llama_token * -n)()
            n = self.L.llama_tokenize(self.vocab, data, len(data), buf, -n, True, False)
        tokens: np.ndarray = np.frombuffer(memoryview(buf), dtype=np.int32, count=n).copy()
        return tokens

    def text_bytes(self, tokens: np.ndarray) -> int:
        """UTF-8 bytes of the text ``tokens`` stand for (their pieces, special tokens as none):
        what bits per byte divide by. Each token's piece length is read once."""
        lengths: dict[int, int] = self.__dict__.setdefault("_piece_len", {})
        buf = ctypes.create_string_buffer(256)
        total = 0
        for t in tokens.tolist():
            n = lengths.get(t)
            if n is None:
                n = int(self.L.llama_token_to_piece(self.vocab, t, buf, 256, 0, False))
                if n < 0:  # a piece longer than the buffer: -n is its length
                    n = -n
                lengths[t] = n
            total += n
        return total

    # -- decoding --------------------------------------------------------------------------
    def _bind_batch(self) -> None:
        b = self._batch
        n = self.n_batch
        self._tok = np.ctypeslib.as_array(b.token, shape=(n,))
        self._pos = np.ctypeslib.as_array(b.pos, shape=(n,))
        self._nseq = np.ctypeslib.as_array(b.n_seq_id, shape=(n,))
        self._out = np.ctypeslib.as_array(
            ctypes.cast(b.logits, ctypes.POINTER(ctypes.c_int8)), shape=(n,)
        )
        self._seq_ptrs = [b.seq_id[i] for i in range(n)]
        self._nseq[:] = 1

    def clear_memory(self, data: bool = True) -> None:
        self.L.llama_memory_clear(self.L.llama_get_memory(self.ctx), data)

    def pos_max(self) -> int:
        """The largest position of sequence 0 in the memory (-1 when empty)."""
        return int(self.L.llama_memory_seq_pos_max(self.L.llama_get_memory(self.ctx), 0))

    def save_seq(self) -> Any:
        """Sequence 0's state (its KV cells), as ``llama_state_seq_get_data`` copies it."""
        size = int(self.L.llama_state_seq_get_size(self.ctx, 0))
        buf = (ctypes.c_uint8 * max(size, 1))()
        self.L.llama_state_seq_get_data(self.ctx, buf, size, 0)
        return buf

    def restore_seq(self, buf: Any) -> bool:
        """Put a saved state back into sequence 0; False when this context cannot take it."""
        return int(self.L.llama_state_seq_set_data(self.ctx, buf, len(buf), 0)) != 0

    def decode(
        self, tokens: np.ndarray, pos: np.ndarray, seq: np.ndarray, outputs: np.ndarray
    ) -> int:
        """One ``llama_decode`` of up to n_batch tokens; returns how many rows of logits it made."""
        n = len(tokens)
        if n > self.n_batch:
            raise ValueError("batch larger than n_batch")
        self.abort.check()
        self._tok[:n] = tokens
        self._pos[:n] = pos
        self._out[:n] = outputs
        for i in range(n):
            self._seq_ptrs[i][0] = int(seq[i])
        self._run_batch(n)
        return int(np.count_nonzero(outputs))

    def _run_batch(self, n: int) -> None:
        """``llama_decode`` of the first ``n`` entries of the batch; aborts and failures raise."""
        self._batch.n_tokens = n
        rc = self.L.llama_decode(self.ctx, self._batch)
        self.abort.check()
        if rc == 2:
            raise Aborted()
        if rc != 0:
            raise QuantLensError(
                f"llama_decode failed (code {rc}).",
                "Not enough memory for this context; try a smaller context or fewer chunks.",
            )

    def decode_shared(
        self, tokens: list[int], pos: list[int], seqs: list[tuple[int, ...]], outputs: list[bool]
    ) -> int:
        """One ``llama_decode`` where a token may belong to several sequences (a prefix shared
        by a task's endings); returns how many rows of logits it made."""
        n = len(tokens)
        if n > self.n_batch:
            raise ValueError("batch larger than n_batch")
        self.abort.check()
        b = self._batch
        for i in range(n):
            b.token[i] = tokens[i]
            b.pos[i] = pos[i]
            b.n_seq_id[i] = len(seqs[i])
            for k, s in enumerate(seqs[i]):
                self._seq_ptrs[i][k] = s
            b.logits[i] = 1 if outputs[i] else 0
        try:
            self._run_batch(n)
        finally:
            self._nseq[:n] = 1  # decode() expects one sequence per token
        return sum(1 for o in outputs if o)

    def logits(self, n_rows: int) -> np.ndarray:
        """A writable view on the logits of the last decode: ``n_rows`` x ``n_vocab`` float32."""
        ptr = self.L.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_rows, self.n_vocab))

    def synchronize(self) -> None:
        self.L.llama_synchronize(self.ctx)
