"""The one rule for file names read from annotations and id lists: they stay inside their root."""
from __future__ import annotations

import os
from pathlib import Path

from visiontk.data.images import is_image_file
from visiontk.data.regular_files import walk_files

from .issues import MALFORMED, UNSAFE_PATH, Issues


def inside(root: Path | str, name: str) -> Path | None:
    """``root / name`` if it stays inside ``root``, else None ('..' escapes, absolute names).

    The check is lexical (normpath, not resolve): a symlink the user placed
    inside the dataset (to shared storage, say) is part of the dataset; what
    must never happen is an annotation naming a file outside it.
    """
    if not name or os.path.isabs(name) or Path(name).drive:
        return None
    try:
        base = os.path.normpath(os.path.abspath(root))
        full = os.path.normpath(os.path.join(base, name))
        escapes = os.path.commonpath([base, full]) != base
    except ValueError:  # commonpath of two drives (Windows)
        return None
    return None if escapes else Path(full)


def inside_or_absolute(root: Path | str, name: str) -> Path | None:
    """``inside(root, name)``, also for an absolute ``name`` that lies in ``root`` (a YOLO
    list may hold absolute paths): the name stays inside its root either way."""
    if name and os.path.isabs(name):
        return inside(root, os.path.relpath(os.path.normpath(name), os.path.normpath(os.path.abspath(root))))
    return inside(root, name)


def resolve(root: Path, name: str, where: str, issues: Issues, field: str, root_name: str,
            absolute: bool = False) -> Path | None:
    """``inside(root, name)``, with a refused name reported under the policy.

    ``field`` and ``root_name`` word the message: "file_name '../x' escapes the image root /data/images".
    """
    if not name:
        issues(MALFORMED, where, f"empty {field}")
        return None
    path = inside_or_absolute(root, name) if absolute else inside(root, name)
    if path is None:
        issues(UNSAFE_PATH, where, f"{field} {name!r} escapes the {root_name} {root}")
    return path


def find_images(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; ``exclude``: a subfolder to leave out."""
    return sorted(walk_files(folder, is_image_file, exclude=exclude))
