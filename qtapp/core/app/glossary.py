"""Plain-words explanations of quant types and metrics, for tooltips anywhere in the window.

Use :func:`explain_quant` for a type name ("Q4_K_M", "IQ2_XXS", "UD-Q4_K_XL"...) and
:func:`explain` for a metric or term key ("ppl", "kld", "same_top", ...). Both return plain text
(no HTML), short enough for a tooltip.
"""

from __future__ import annotations

import re

#: quant type families, matched by prefix in :func:`explain_quant` (longest prefix wins)
QUANT_FAMILIES: dict[str, str] = {
    "F32": "32-bit floats: the full-precision original, 4 bytes per weight. Only for reference.",
    "F16": "16-bit floats: practically lossless, 2 bytes per weight. The usual base to "
    "quantize from and to compare quality against.",
    "BF16": "bfloat16: 16-bit floats with the range of F32; how most models are trained. As "
    "good as F16 for a base.",
    "Q8_0": "8-bit, one scale per block of 32 weights (8.5 bits per weight). Almost "
    "indistinguishable from F16 at half the size.",
    "Q6_K": "6-bit k-quant (6.56 bits per weight). Very close to F16; a safe choice when it fits.",
    "Q5_K": "5-bit k-quant (about 5.5 bits per weight). Small quality loss; _M keeps a few "
    "sensitive tensors at higher precision than _S.",
    "Q4_K": "4-bit k-quant (about 4.5-4.9 bits per weight). The popular balance of size and "
    "quality; Q4_K_M is the usual default.",
    "Q3_K": "3-bit k-quant (about 3.4-4.3 bits per weight). Noticeable loss; for when 4-bit "
    "does not fit. _S, _M and _L spend more bits on sensitive tensors.",
    "Q2_K": "2-bit k-quant (about 2.6-3.0 bits per weight). Large quality loss; a last resort "
    "for big models on small GPUs.",
    "Q4_0": "Legacy 4-bit, one scale per block of 32 weights. Fast on some CPUs and ARM; "
    "k-quants of the same size are usually better.",
    "Q4_1": "Legacy 4-bit with a scale and an offset per block. Superseded by k-quants.",
    "Q5_0": "Legacy 5-bit, one scale per block of 32. Superseded by Q5_K.",
    "Q5_1": "Legacy 5-bit with a scale and an offset per block. Superseded by Q5_K.",
    "IQ4_XS": "i-quant, 4.25 bits per weight: a lookup grid instead of plain integers. Often "
    "as good as Q4_K_S and smaller; best with an importance matrix.",
    "IQ4_NL": "i-quant, 4.5 bits per weight, non-linear levels in blocks of 32.",
    "IQ3": "i-quant, about 3-3.7 bits per weight. Better than Q3_K at the same size; needs an "
    "importance matrix to do well.",
    "IQ2": "i-quant, about 2-2.7 bits per weight. Usable only with an importance matrix; "
    "for very large models.",
    "IQ1": "i-quant, about 1.6-1.8 bits per weight. Extreme; quality drops a lot.",
    "TQ": "Ternary quants (weights -1, 0, +1) for models trained that way (BitNet). Not for "
    "ordinary models.",
    "MXFP4": "4-bit floating point blocks (microscaling), used by some mixture-of-experts models "
    "such as gpt-oss.",
    "UD-": "Unsloth Dynamic: a base type with some tensors (attention, first and last layers) "
    "kept at higher precision, chosen per tensor. The _XL suffix marks these mixes.",
}

#: metrics and terms, keyed by short lower-case ids
TERMS: dict[str, str] = {
    "ppl": "Perplexity (PPL): how surprised the model is by a text; lower is better. Compare "
    "PPL only between quants of the same model on the same text: a rise of 1-2% over F16 is "
    "small, over 10% is large.",
    "bpb": "Bits per byte: the same log-likelihoods as perplexity, divided by the text's "
    "bytes instead of its tokens. Lower is better. Unlike PPL it compares models with different "
    "tokenizers, as long as they were scored on the same text.",
    "kld": "KL divergence (KLD): how far a quant's predicted probabilities drift from the F16 "
    "base's, token by token; 0 means identical. Under 0.01 is excellent, above 0.1 is "
    "clearly worse. More sensitive than perplexity.",
    "same_top": "Same top token (%): how often the quant's most likely next token is the same "
    "as the base model's. 99% is excellent; below 90% changes answers noticeably.",
    "delta_p": "Δp: the change in probability the quant gives to the correct next token, "
    "compared with the base (percentage points). Near 0 is good; negative means it became "
    "less sure of the right answer.",
    "pp": "Prompt processing speed (pp, tokens/s): how fast the model reads your prompt. Matters "
    "for long inputs and documents; limited by compute.",
    "tg": "Text generation speed (tg, tokens/s): how fast the model writes its answer, one "
    "token at a time; limited by memory bandwidth, so smaller quants are faster.",
    "bpw": "Bits per weight (bpw): the average storage per weight including scales. F16 is 16, "
    "Q8_0 8.5, Q4_K_M about 4.9. Size ≈ parameters × bpw / 8.",
    "kv_cache": "KV cache: memory that holds the context the model has read (keys and values "
    "for every layer). It grows with the context length; a quantized cache (q8_0) halves it at "
    "a small quality cost.",
    "context": "Context length (ctx): how many tokens the model can see at once: prompt plus "
    "answer. Longer contexts need a bigger KV cache.",
    "offload": "Offload (GPU layers): how many of the model's layers run on the GPU. All layers "
    "on the GPU is fastest; the rest run on the CPU from system RAM, much slower.",
    "compute_buffer": "Compute buffer: scratch memory llama.cpp needs while it runs a batch, on "
    "top of weights and KV cache; a few hundred MiB on a GPU.",
    "gpu_margin": "GPU margin: memory kept free on each GPU for the driver, the desktop and other "
    "programs, so a plan that 'fits' really runs.",
    "imatrix": "Importance matrix (imatrix): statistics from running the model on some text, "
    "telling the quantizer which weights matter most. Improves low-bit quants (IQ*, Q2, Q3).",
    "requantize": "Requantize: making a quant from a file that is already quantized. Allowed, "
    "but quality is lost twice; quantize from F16/BF16 when you can.",
    "chunks": "Chunks: the evaluation text is cut into pieces of the context length; more "
    "chunks give a more precise number and take longer.",
    "gguf": "GGUF: the model file format of llama.cpp. One file (or split shards) holds the "
    "weights, the tokenizer and the settings.",
    "split": "Split model: a big GGUF cut into shards named -00001-of-0000N.gguf. Open the first; "
    "llama.cpp finds the rest in the same folder.",
    "threads": "Threads: CPU threads llama.cpp uses. Auto uses the physical cores; more than "
    "that rarely helps.",
    "kv_type": "KV cache type: f16 is the default; q8_0 halves the cache with almost no loss; "
    "q4_0 quarters it with a visible loss.",
}

_ALIASES = {
    "perplexity": "ppl",
    "kl": "kld",
    "kl_divergence": "kld",
    "top1": "same_top",
    "same-top": "same_top",
    "sametop": "same_top",
    "dp": "delta_p",
    "Δp": "delta_p",
    "pp512": "pp",
    "tg128": "tg",
    "kv": "kv_cache",
    "ctx": "context",
}


def explain(term: str) -> str:
    """The tooltip text for a metric or term; empty when unknown."""
    key = term.strip()
    key = _ALIASES.get(key, _ALIASES.get(key.lower(), key.lower().replace(" ", "_")))
    return TERMS.get(key, "")


def explain_quant(name: str) -> str:
    """The tooltip text for a quant type name, by its family; empty when unknown."""
    upper = name.strip().upper()
    extra = ""
    if upper.startswith("UD-") or upper.endswith("_XL"):
        extra = " " + QUANT_FAMILIES["UD-"]
        upper = upper.removeprefix("UD-")
        upper = re.sub(r"_XL$", "_M", upper)
    family = upper
    best = ""
    for prefix in QUANT_FAMILIES:
        if prefix != "UD-" and family.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    if not best:
        return extra.strip()
    return (QUANT_FAMILIES[best] + extra).strip()
