"""Reading the files formats are made of -- json, yaml, text, image headers -- with one-line DataErrors."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from visiontk.data.images import exif_orientation
from visiontk.data.regular_files import open_regular, read_regular_text
from visiontk.errors import DataError
from visiontk.recipe.expansion import check_expansion

from .issues import BAD_IMAGE, Issues, one_line



def _cannot_read(path: Path, e: OSError) -> DataError:
    if isinstance(e, FileNotFoundError):
        return DataError(f"{path}: no such file")
    return DataError(f"{path}: cannot read ({e.strerror or e.__class__.__name__})")


def read_text(path: Path) -> str:
    try:
        return read_regular_text(path)
    except OSError as e:
        raise _cannot_read(path, e) from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: cannot read (not UTF-8 text)") from None


def load_json(path: Path) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(one_line(f"{path}: not valid JSON ({e})")) from None


def load_yaml(path: Path) -> Any:
    text = read_text(path)
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise DataError(f"{path}: YAML nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or e.__class__.__name__
        raise DataError(one_line(f"{path}: not valid YAML{line} ({problem})")) from None
    check_expansion(data, str(path), DataError)  # an alias bomb as a data yaml's class names
    return data


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) as displayed, i.e. after EXIF rotation; reads the header only."""
    try:
        with open_regular(path) as f, Image.open(f) as im:
            w, h = im.size
            orientation = exif_orientation(im, f)  # the header only (PIL's PNG getexif decodes every pixel)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(one_line(f"{path}: cannot read image ({e})")) from None
    # Orientations 5-8 rotate by 90 degrees: the displayed image has its sides swapped.
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def read_image_size(path: Path, where: str, issues: Issues) -> tuple[int, int] | None:
    """``image_size``, or None with the problem reported under the policy (``where``: the annotation naming it)."""
    try:
        return image_size(path)
    except DataError as e:
        issues.message(BAD_IMAGE, str(e) if where == str(path) else f"{where}: {e}")
        return None
