"""Recipe files: finding a shipped recipe by name, reading YAML, writing a recipe back."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from visiontk.errors import UserError
from visiontk.regular_files import NotRegularFile, file_present, read_regular_text
from visiontk.recipe.overrides import apply_overrides
from visiontk.recipe.schema import Recipe

RECIPES_DIR = Path(__file__).resolve().parent.parent.parent / "recipes"


def resolve_recipe_path(name_or_path: str) -> Path:
    """A path to a YAML file, or the name of a shipped recipe (e.g. classify/shapes).

    A FIFO or a folder of that name is not read; it is named as what it is
    unless a shipped recipe has the name (a data folder `membrane` next to
    `segment train membrane`).
    """
    p = Path(name_or_path)
    special = None
    try:
        if file_present(p):
            return p
    except NotRegularFile as e:
        special = e
    for candidate in (RECIPES_DIR / name_or_path, RECIPES_DIR / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    matches = sorted(RECIPES_DIR.glob(f"*/{name_or_path}.yaml")) if RECIPES_DIR.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if special is not None:
        raise special
    raise UserError(f"{name_or_path}: no such recipe file or shipped recipe (see 'visiontk recipes list')")


def list_recipes() -> list[Path]:
    return sorted(RECIPES_DIR.glob("*/*.yaml")) if RECIPES_DIR.is_dir() else []


def read_yaml(path: Path) -> Any:
    import yaml  # here: reading a checkpoint's recipe (predict) needs no YAML

    try:
        text = read_regular_text(path)  # never opens a FIFO to wait on it
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e.__class__.__name__}: {e})") from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise UserError(f"{path}: YAML nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}{where}: YAML syntax error: {problem}") from None


def read_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> tuple[dict, str]:
    """(the raw mapping with `--set` overrides applied, the file name errors start with)."""
    path = resolve_recipe_path(str(name_or_path))
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping, got {type(raw).__name__}")
    return apply_overrides(raw, overrides or []), str(path)


def dump_recipe(recipe: Recipe) -> str:
    import yaml

    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
