"""`visiontk data check` / `data stats`: a data set read as training reads it, without training.

    layout.py   a folder without a recipe -> the shipped template of its layout
    splits.py   one split through the task's own dataset adapter
    check.py    images decoded, problems and statistics counted, summary.json and plots written
"""
from __future__ import annotations

from pathlib import Path

from visiontk.console import recorded_warnings
from visiontk.recipe import read_recipe, resolve_recipe_path
from visiontk.recipe.files import read_yaml
from visiontk.errors import UserError

from .check import check_data, summary_lines

__all__ = ["check_target", "summary_lines"]


def _is_recipe(target: str) -> bool:
    """A recipe file (a mapping with 'task') or a shipped recipe name; a folder or a data yaml is not."""
    path = Path(target)
    if path.is_dir():
        return False
    if path.is_file():
        raw = read_yaml(path)
        return isinstance(raw, dict) and "task" in raw
    try:
        resolve_recipe_path(target)
    except UserError:
        return False
    return True


def check_target(target: str, task: str | None = None, overrides: list[str] | None = None,
                 out_dir: Path | None = None, overwrite: bool = False, progress=None, plots: bool = True) -> dict:
    """The report of a recipe's data set, or of a folder (or YOLO data yaml) whose layout is detected."""
    from visiontk.tasks.recipes import recipe_from_dict

    from .layout import layout_recipe

    # Every problem counted, none raised: the check's policy, whatever the recipe says.
    overrides = [*(overrides or []), "data.bad_annotations=skip"]
    layout = None
    # The warnings of the layout's detection and of the recipe count too (the summary lists them).
    with recorded_warnings() as warnings:
        if _is_recipe(target):
            raw, source = read_recipe(target, overrides)
        else:
            raw, source, layout = layout_recipe(Path(target), task, overrides)
        recipe = recipe_from_dict(raw, source)
        if task and recipe.task != task:
            raise UserError(f"{target}: recipe is for task '{recipe.task}', not '{task}' (--task)")
        return check_data(recipe, out_dir, overwrite, source=source, progress=progress, layout=layout, plots=plots,
                          warnings=warnings)
