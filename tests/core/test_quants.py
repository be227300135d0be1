"""The quant catalogue against the installed llama.cpp, and the dry run over every type."""

from __future__ import annotations

import re

import llama_cpp
import pytest

from qtapp.core.fit.quants import (
    QUALITY_ORDER,
    QUANT_TYPES,
    RECIPES,
    quality_rank,
    resolve_target,
    tensor_bytes,
)
from qtapp.core.jobs.job import run_job


def test_catalogue_is_the_librarys_own_list() -> None:
    lib = {
        k.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_").removeprefix("ALL_"): v
        for k, v in vars(llama_cpp).items()
        if k.startswith("LLAMA_FTYPE_")
    }
    # every type of ours has the library's number
    assert {name: lib.get(name) for name in QUANT_TYPES} == {
        name: t.ftype for name, t in QUANT_TYPES.items()
    }
    # every type the library has is ours, except the ones llama-quantize cannot write
    assert set(lib) - set(QUANT_TYPES) <= {"GUESSED", "NVFP4"}


def test_quality_order_covers_every_type_and_recipe() -> None:
    assert set(QUALITY_ORDER) == set(QUANT_TYPES) | set(RECIPES)
    assert quality_rank("Q4_K_XL") == quality_rank("Q4_K_M") + 1
    assert quality_rank("Q2_K") < quality_rank("Q4_K_M") < quality_rank("Q8_0")
    assert quality_rank("Q4_K") == quality_rank("Q4_K_M")  # alias


def test_tensor_bytes_follow_ggml_block_sizes() -> None:
    assert tensor_bytes("F16", [4096, 10]) == 4096 * 10 * 2
    assert tensor_bytes("Q8_0", [4096, 10]) == 10 * 128 * 34
    assert tensor_bytes("Q4_K", [4096, 10]) == 10 * 16 * 144
    assert tensor_bytes("Q2_0", [256, 1]) == 4 * 18  # newer than the gguf package


def test_resolve_target_knows_types_aliases_and_recipes() -> None:
    assert resolve_target("q4_k").name == "Q4_K_M"
    assert resolve_target("Q2_K_XL").name == "Q2_K_XL"
    with pytest.raises(ValueError, match="unknown quant type"):
        resolve_target("Q9_Z")


def test_xl_recipe_rules_are_valid_and_first_match_wins() -> None:
    recipe = RECIPES["Q4_K_XL"]
    recipe.validate()
    names = [
        "output.weight",
        "blk.0.ffn_up.weight",
        "blk.5.attn_q.weight",
        "blk.5.ffn_up_exps.weight",
        "blk.5.ffn_down_exps.weight",
        "blk.11.ffn_up.weight",
    ]
    caught = recipe.matches(names, n_layer=12)
    flat = {name: pattern for pattern, hits in caught.items() for name in hits}
    assert flat["output.weight"] == r"^output\.weight$"
    assert flat["blk.0.ffn_up.weight"] == flat["blk.11.ffn_up.weight"]  # first and last layer
    assert re.search("attn_", flat["blk.5.attn_q.weight"])
    assert flat["blk.5.ffn_down_exps.weight"] == "ffn_down"
    assert flat["blk.5.ffn_up_exps.weight"].startswith("ffn_(up|gate)")


def test_dry_run_sizes_every_type_of_the_catalogue(tiny_model) -> None:
    result = run_job(
        "dry_quantize_many", model=str(tiny_model), targets=list(QUANT_TYPES) + list(RECIPES)
    )
    assert result["errors"] == {}
    sizes = result["results"]
    for name, sized in sizes.items():
        assert len(sized["tensors"]) == 39, name
        assert sized["bytes"] == sum(t["bytes"] for t in sized["tensors"])
    assert sizes["Q2_K"]["bytes"] < sizes["Q4_K_M"]["bytes"] < sizes["Q8_0"]["bytes"]
    assert sizes["Q8_0"]["bytes"] < sizes["F16"]["bytes"] < sizes["F32"]["bytes"]
    assert sizes["IQ2_XXS"]["needs_imatrix"] and not sizes["Q4_K_M"]["needs_imatrix"]
