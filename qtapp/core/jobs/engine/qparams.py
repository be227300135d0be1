"""Build ``llama_model_quantize_params`` for a target type or recipe (for dry and real runs)."""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field
from typing import Any

from qtapp.core.fit.quants import QUANT_TYPES, Recipe, ggml_type_id, resolve_target
from qtapp.core.jobs.engine.llama_lib import llama_cpp

#: one tensor line of llama.cpp's quantize log
TENSOR_LINE = re.compile(
    r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)\s+-\s+\[([\d,\s]+)\],\s+type\s+=\s+(\w+),\s+"
    r"(?:converting to (\w+) .. )?size\s+=\s+([\d.]+)\s+MiB"
    r"(?:\s+->\s+([\d.]+)\s+MiB(?:\s+\((\w+)\))?)?"
)


@dataclass
class QuantRequest:
    """What to quantize to, and how. ``target`` is a type name, alias or recipe name."""

    target: str
    n_layer: int = 0
    nthread: int = 0
    allow_requantize: bool = False
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None
    leave_output_tensor: bool = False
    pure: bool = False
    keep_split: bool = False
    extra_rules: list[tuple[str, str]] = field(default_factory=list)
    user_recipes: dict[str, Recipe] = field(default_factory=dict)


class QuantParams:
    """The ctypes params plus every buffer they point to (kept alive together)."""

    def __init__(
        self, request: QuantRequest, dry_run: bool, imatrix: dict[str, Any] | None = None
    ) -> None:
        target = resolve_target(request.target, request.user_recipes)
        rules: list[tuple[str, str]] = list(request.extra_rules)
        if isinstance(target, Recipe):
            qtype = QUANT_TYPES[target.base]
            rules += target.overrides(request.n_layer)
        else:
            qtype = target
        self.ftype_name = qtype.name
        self.rules = rules
        p = llama_cpp.llama_model_quantize_default_params()
        p.ftype = qtype.ftype
        p.nthread = request.nthread
        p.allow_requantize = request.allow_requantize
        p.quantize_output_tensor = not request.leave_output_tensor
        p.pure = request.pure
        p.keep_split = request.keep_split
        p.dry_run = dry_run
        if request.output_tensor_type:
            p.output_tensor_type = ggml_type_id(request.output_tensor_type)
        if request.token_embedding_type:
            p.token_embedding_type = ggml_type_id(request.token_embedding_type)
        self._keep: list[Any] = []
        if rules:
            arr = (llama_cpp.llama_model_tensor_override * (len(rules) + 1))()
            for i, (pattern, type_name) in enumerate(rules):
                encoded = pattern.encode()
                self._keep.append(encoded)
                arr[i].pattern = encoded
                arr[i].type = ggml_type_id(type_name)
            arr[len(rules)].pattern = None
            arr[len(rules)].type = 0  # the NULL pattern ends the list
            self._keep.append(arr)
            p.tt_overrides = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
        if imatrix:
            entries = list(imatrix.items())
            arr_i = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()
            for i, (name, values) in enumerate(entries):
                buf = (ctypes.c_float * len(values))(*values)
                encoded = name.encode()
                self._keep += [buf, encoded]
                arr_i[i].name = encoded
                arr_i[i].data = ctypes.cast(buf, ctypes.POINTER(ctypes.c_float))
                arr_i[i].size = len(values)
            arr_i[len(entries)].name = None
            self._keep.append(arr_i)
            p.imatrix = ctypes.cast(arr_i, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        self.params = p

    def pointer(self) -> Any:
        return ctypes.byref(self.params)
