"""Path options of ``data.options``, shared by the formats' options models.

A path option is one path, where ``{split}`` stands for the split's name
(``data.train`` / ``data.val``), or a mapping split -> path. Recipe paths
are the user's own configuration: they may be absolute, and relative ones are
under ``data.root``. (The containment rule of ``paths`` is for the names read
from annotation files, which come from elsewhere.)

Each format's options are a recipe section (``visiontk.recipe.Section``),
registered with ``register_format_options`` by the module that reads the
format, and validated with the rest of the recipe.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BeforeValidator

from visiontk.errors import UserError
from visiontk.recipe import rule_error


def _path_string(value: Any) -> Any:
    if not isinstance(value, str):
        raise rule_error("must be a path string")
    if not value:
        raise rule_error("must not be empty")
    return value


# One non-empty path; a value of PathOption's mapping.
PathString = Annotated[str, BeforeValidator(_path_string)]
PathOption = Union[PathString, dict[str, PathString]]


def split_path(value: PathOption, split: str, key: str, source: str = "recipe") -> str:
    if isinstance(value, dict):
        if split not in value:
            raise UserError(f"{source}: 'data.options.{key}' has no entry for split '{split}' "
                            f"(has: {', '.join(map(str, value)) or 'none'})")
        return str(value[split])
    return str(value).replace("{split}", split)


def under(root: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p
