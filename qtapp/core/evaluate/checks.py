"""Checks an evaluation's inputs before a worker starts: clear messages instead of llama.cpp's."""

from __future__ import annotations

from pathlib import Path

from qtapp.core.errors import QuantLensError

#: more than this share of undecodable bytes (or any NUL byte) means "not a text file"
_MAX_BAD_SHARE = 0.01
_SNIFF_BYTES = 1 << 20


def check_text_bytes(data: bytes, name: str) -> None:
    """Refuse a binary file given as evaluation text (llama-perplexity would score its bytes)."""
    head = data[:_SNIFF_BYTES]
    bad = head.decode("utf-8", errors="replace").count("\ufffd")
    if b"\x00" in head or bad > _MAX_BAD_SHARE * max(len(head), 1):
        raise QuantLensError(
            f"The evaluation text {name} is not UTF-8 text (it looks binary).",
            "Choose a plain UTF-8 text file such as wiki.test.raw.",
        )


def check_text_file(path: str | Path) -> None:
    p = Path(path)
    if p.is_dir():
        raise QuantLensError(
            f"The evaluation text {p} is a folder.", "Give the path of a UTF-8 text file."
        )
    try:
        with p.open("rb") as fh:
            data = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        raise QuantLensError(
            f"Cannot read the evaluation text {p}: {exc.strerror or exc}.",
            "Choose an existing UTF-8 text file.",
        ) from exc
    if not data.strip():
        raise QuantLensError(
            f"The evaluation text {p.name} is empty.",
            "Choose a text file with prose in it (at least 2 x context tokens long).",
        )
    check_text_bytes(data, p.name)


def _vocab_key(info: object) -> tuple[object, ...]:
    meta = getattr(info, "metadata", {})
    return (
        getattr(info, "n_vocab", None),
        meta.get("tokenizer.ggml.model"),
        meta.get("tokenizer.ggml.pre"),
    )


def check_eval_inputs(
    model: str | Path,
    base: str | Path | None = None,
    text: str | Path | None = None,
    ctx: int = 512,
    chunks: int | None = None,
    reps: int = 5,
    threads: int | None = None,
    n_gpu_layers: int | None = None,
) -> None:
    """Raise :class:`QuantLensError` for inputs llama.cpp would refuse or turn into garbage.

    Reads only GGUF headers (instant). A base with another tokenizer is refused here, before
    its log-probs are computed: KL divergence compares the two models token by token.
    """
    from qtapp.core.gguf.model import read_model

    if ctx < 8:
        raise QuantLensError(f"Context {ctx} is too small.", "Use a context (--ctx) of at least 8.")
    if chunks is not None and chunks < 1:
        raise QuantLensError(
            f"--chunks {chunks} is out of range.", "Use 1 or more, or leave it out for all."
        )
    if reps < 1:
        raise QuantLensError(f"--reps {reps} is out of range.", "Use 1 or more repetitions.")
    if threads is not None and threads < 0:
        raise QuantLensError(
            f"--threads {threads} is negative.", "Use 0 (all cores) or a positive count."
        )
    if n_gpu_layers is not None and n_gpu_layers < -1:
        raise QuantLensError(
            f"--n-gpu-layers {n_gpu_layers} is out of range.", "Use -1 (all layers) or 0 and up."
        )
    info = read_model(model)
    if base:
        base_info = read_model(base)
        mine, theirs = _vocab_key(info), _vocab_key(base_info)
        if mine != theirs:
            raise QuantLensError(
                f"The base model {Path(base).name} has a different vocabulary "
                f"({theirs[0]} tokens, {theirs[1]}) than {Path(model).name} "
                f"({mine[0]} tokens, {mine[1]}): KL divergence is undefined.",
                "Choose as --base the F16/BF16 model this one was quantized from.",
            )
    if text:
        check_text_file(text)
