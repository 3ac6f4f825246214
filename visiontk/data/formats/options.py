"""Path options of ``data.options``, shared by the format option classes.

A path option is one path, where ``{split}`` stands for the split's name
(``data.train`` / ``data.val``), or a mapping split -> path. Recipe paths
are the user's own configuration: they may be absolute, and relative ones are
under ``data.root``. (The containment rule of ``paths`` is for the names read
from annotation files, which come from elsewhere.)
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Optional, Union

from visiontk.errors import UserError

PathOption = Union[str, dict]
_PATH_TYPES = (PathOption, Optional[PathOption])


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


def check_options(options: Any, source: str) -> None:
    """Checks types alone cannot express: path options are non-empty strings
    (per split, for a mapping), then the options' own ``check(source)`` if any."""
    hints = typing.get_type_hints(type(options))
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if hints[f.name] not in _PATH_TYPES or value is None:
            continue
        for split, path in (value.items() if isinstance(value, dict) else [(None, value)]):
            key = f"data.options.{f.name}" + (f".{split}" if split is not None else "")
            if not isinstance(path, str):
                raise UserError(f"{source}: '{key}' must be a path string, got {path!r}")
            if not path:
                raise UserError(f"{source}: '{key}' must not be empty")
    own_check = getattr(options, "check", None)
    if own_check is not None:
        own_check(source)


def check_range(value: Any, ok: bool, key: str, requirement: str, source: str) -> None:
    if not ok:
        raise UserError(f"{source}: '{key}' {requirement}, got {value!r}")
