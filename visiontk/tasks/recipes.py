"""Recipes validated for their task: what the engine and the commands load.

The core (visiontk.recipe) validates a mapping given a task's sections; this
module finds the task the recipe names, hands its sections down, and runs the
task's checks that span sections.
"""
from __future__ import annotations

from pathlib import Path

from visiontk.recipe import Recipe, parse_recipe, read_recipe, recipe_task
from visiontk.tasks.registry import get_task


def recipe_from_dict(raw: dict, source: str = "recipe", augmentations: bool = True) -> Recipe:
    """A validated recipe from a mapping (a YAML file's, or one stored in a checkpoint).

    augmentations=False: `data.augment` is not built to check it (a checkpoint's
    recipe, read to predict or evaluate, which never augment: building it would
    import albumentations, a second of start-up; training and --resume check it)."""
    task = get_task(recipe_task(raw, source), source=source)
    recipe = parse_recipe(raw, task.sections(), source)
    checked = recipe
    if not augmentations and getattr(recipe.data, "augment", None):
        checked = recipe.model_copy(update={"data": recipe.data.model_copy(update={"augment": []})})
    task.validate_recipe(checked, source)
    return recipe


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """A validated recipe from a file or a shipped recipe name, with `--set` overrides."""
    raw, source = read_recipe(name_or_path, overrides)
    return recipe_from_dict(raw, source)
