"""Class names as data-set yamls give them (Ultralytics' ``names``): a list, or an ``{id: name}`` map.

One parser for every format that reads such a yaml: YOLO detection sets
(ids must be 0..K-1, the label files' class column) and mask folders whose
PNG values are sparse class ids (ids may have gaps: 0, 7, 200).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from visiontk.errors import DataError
from visiontk.regular_files import require_file

from .files import load_yaml


def names_map(names: Any, source: str | Path) -> dict[int, str]:
    """``{id: name}`` sorted by id from a list (ids 0..K-1) or a mapping (yaml keys may be ints or digit strings)."""
    if isinstance(names, list) and names:
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict) and names:
        by_id = {}
        for key, name in names.items():
            try:
                ident = int(key)
            except (TypeError, ValueError):
                raise DataError(f"{source}: 'names' keys must be integer class ids, got {key!r}") from None
            if isinstance(key, bool) or ident < 0:
                raise DataError(f"{source}: 'names' keys must be integer class ids >= 0, got {key!r}")
            by_id[ident] = str(name)
        return dict(sorted(by_id.items()))
    raise DataError(f"{source}: 'names' must be a non-empty list or {{id: name}} mapping")


def read_names_yaml(path: Path) -> dict[int, str]:
    """The ``names`` of a data-set yaml (e.g. an Ultralytics data yaml) as ``{id: name}``."""
    path = Path(path)
    require_file(path, f"{path}: class-map yaml not found (data.options.data_yaml)")
    cfg = load_yaml(path)
    if not isinstance(cfg, dict) or "names" not in cfg:
        raise DataError(f"{path}: expected a mapping with 'names' (a list or {{id: name}})")
    return names_map(cfg["names"], path)
