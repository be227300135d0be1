"""A solution of the knapsack as a user recipe: one ``--tensor-type`` rule per group."""

from __future__ import annotations

from qtapp.core.fit.quants import Recipe, Rule
from qtapp.core.tailor.groups import Group
from qtapp.core.tailor.solve import Solution


def recipe_name(model_stem: str, budget: int) -> str:
    """``gemma-3-270m-tailored-243MiB`` (a valid user-recipe name, at most 64 characters)."""
    stem = "".join(c if c.isalnum() or c in "_.+-" else "-" for c in model_stem)[:40].strip("-.")
    return f"{stem or 'model'}-tailored-{budget // 2**20}MiB"


def to_recipe(name: str, solution: Solution, groups: list[Group], high: str, note: str) -> Recipe:
    """Every quantizable tensor is caught by its group's rule; ``high`` is the base type (it
    also decides what llama.cpp does with tensors no rule names, of which there are none)."""
    rules = []
    for g in groups:
        t = solution.choice[g.name]
        delta = next(o.delta for o in solution.options[g.name] if o.type == t)
        rules.append(Rule(g.pattern, t, f"{g.name}: +{delta:.5f} KLD predicted"))
    return Recipe(name, high, tuple(rules), note, builtin=False)


def tensor_type_args(recipe: Recipe, n_layer: int) -> list[str]:
    """The recipe as llama-quantize's command line: ``--tensor-type PATTERN=TYPE`` pairs, then
    the base type."""
    out: list[str] = []
    for pattern, t in recipe.overrides(n_layer):
        out += ["--tensor-type", f"{pattern}={t}"]
    return out


def is_tailored(label: str) -> bool:
    """Whether a quant's label (a recipe's name) is one :func:`recipe_name` made."""
    return "-tailored-" in label and label.endswith("MiB")
