"""Make quants of a model for tests by calling llama_model_quantize in a child process.

Independent of QuantLens' own quantize engine on purpose: the evaluation tests must not
depend on it. llama.cpp runs in a subprocess so a crash there cannot take pytest down.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: llama_ftype values from llama.h
FTYPES = {"F16": 1, "Q4_0": 2, "Q8_0": 7, "Q2_K": 10, "Q3_K_M": 12, "Q4_K_M": 15, "Q6_K": 18}

_SCRIPT = """
import sys, llama_cpp
src, dst, ftype, requant = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = ftype
p.allow_requantize = requant
p.nthread = 2
rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p)
sys.exit(1 if rc else 0)
"""


def quantize_copy(src: Path, dst: Path, ftype: str, allow_requantize: bool = False) -> Path:
    """Write ``dst`` as ``src`` quantized to ``ftype`` (a key of :data:`FTYPES`); reuse if there."""
    if dst.exists() and dst.stat().st_size > 0:
        return dst
    part = dst.with_name(dst.name + ".part")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _SCRIPT,
            str(src),
            str(part),
            str(FTYPES[ftype]),
            "1" if allow_requantize else "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"quantize {src.name} -> {ftype} failed:\n{proc.stderr[-2000:]}")
    part.rename(dst)
    return dst


def drop_layers(src: Path, dst: Path, drop: set[int], name: str) -> Path:
    """Write ``dst``: ``src`` without the blocks in ``drop`` (the rest renumbered) and with
    ``general.name`` set to ``name``: a really different model with the same tokenizer, made
    with the gguf package as its ``gguf_new_metadata`` script copies a file."""
    import re

    import gguf

    if dst.exists() and dst.stat().st_size > 0:
        return dst
    reader = gguf.GGUFReader(src)
    arch = str(reader.fields["general.architecture"].contents())
    n_layer = int(reader.fields[f"{arch}.block_count"].contents())
    keep = [i for i in range(n_layer) if i not in drop]
    new_index = {old: new for new, old in enumerate(keep)}
    part = dst.with_name(dst.name + ".part")
    writer = gguf.GGUFWriter(part, arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        value = field.contents()
        if field.name == f"{arch}.block_count":
            value = len(keep)
        elif field.name == "general.name":
            value = name
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    kept = []
    for t in reader.tensors:
        m = re.match(r"blk\.(\d+)\.(.*)", t.name)
        if m and int(m[1]) in drop:
            continue
        new = f"blk.{new_index[int(m[1])]}.{m[2]}" if m else t.name
        writer.add_tensor_info(new, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
        kept.append(t)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in kept:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    part.replace(dst)
    return dst
