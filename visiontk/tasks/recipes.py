"""Recipes validated for their task: what the engine and the commands load.

The core (visiontk.recipe) validates a mapping given a task's sections; this
module finds the task the recipe names, hands its sections down, and runs the
task's checks that span sections.
"""
from __future__ import annotations

from pathlib import Path

from visiontk.recipe import Recipe, parse_recipe, read_recipe, recipe_task
from visiontk.tasks.registry import get_task


def recipe_from_dict(raw: dict, source: str = "recipe") -> Recipe:
    """A validated recipe from a mapping (a YAML file's, or one stored in a checkpoint)."""
    task = get_task(recipe_task(raw, source), source=source)
    recipe = parse_recipe(raw, task.sections(), source)
    task.validate_recipe(recipe, source)
    return recipe


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """A validated recipe from a file or a shipped recipe name, with `--set` overrides."""
    raw, source = read_recipe(name_or_path, overrides)
    return recipe_from_dict(raw, source)
