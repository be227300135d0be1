"""User recipes: one JSON file per recipe in ``app_paths().config / "recipes"``.

A recipe file is ``Recipe.to_dict()``; a damaged file is skipped with a warning (never fatal).
Built-in names (Q4_K_XL ...) and plain type names cannot be taken by a user recipe.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from qtapp.core.app.paths import app_paths
from qtapp.core.fit.quants import ALIASES, QUANT_TYPES, RECIPES, Recipe

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


def recipes_dir() -> Path:
    folder = app_paths().config / "recipes"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def validate_name(name: str) -> str:
    """Return an error message, or "" when ``name`` can be used for a user recipe."""
    if not _NAME.match(name):
        return "Use 1-64 letters, digits, '_', '-', '.' or '+', starting with a letter or digit."
    upper = name.upper()
    if upper in QUANT_TYPES or upper in ALIASES or any(r.upper() == upper for r in RECIPES):
        return f"{name} is a built-in type or recipe; choose another name."
    return ""


def _file_for(name: str) -> Path:
    return recipes_dir() / f"{name}.json"


def load_user_recipes() -> dict[str, Recipe]:
    """All saved user recipes by name (damaged files are skipped)."""
    out: dict[str, Recipe] = {}
    for path in sorted(recipes_dir().glob("*.json")):
        try:
            recipe = Recipe.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("Skipping the recipe file %s: %s", path, exc)
            continue
        out[recipe.name] = recipe
    return out


def save_user_recipe(recipe: Recipe) -> Path:
    """Validate and write atomically; raises ValueError with a message for the user."""
    problem = validate_name(recipe.name)
    if problem:
        raise ValueError(problem)
    recipe.validate()
    path = _file_for(recipe.name)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(recipe.to_dict(), indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def delete_user_recipe(name: str) -> bool:
    try:
        _file_for(name).unlink()
        return True
    except FileNotFoundError:
        return False


def all_recipes() -> dict[str, Recipe]:
    """Built-in recipes first, then the user's."""
    return {**RECIPES, **load_user_recipes()}
