"""A limit on how many values a YAML document (a recipe, a YOLO data yaml) holds once its aliases are expanded.

YAML aliases let 560 bytes name a list of 9^9 values (each level a list of
nine aliases to the level below; safe_load builds it in microseconds by
sharing the objects), and everything that walks the mapping -- validation,
`recipes show`, a checkpoint's recipe on --resume -- would then take hours.
A pickle's memo can share objects the same way, so recipes stored in
checkpoints are counted too. Counting with a memo of what was already seen
costs one visit per distinct object, so the bomb is refused at once.
"""
from __future__ import annotations

from typing import Any

from visiontk.errors import UserError

# Real recipes hold hundreds of values (a 1000-class list, a long augment list); this is far past them.
MAX_VALUES = 100_000


def check_expansion(raw: Any, source: str = "recipe", error: type[UserError] = UserError) -> None:
    """Refuse `raw` (with `error`) when walking it would visit more than MAX_VALUES values, or never end (a cycle)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(value: Any) -> int:
        if not isinstance(value, (dict, list, tuple)):
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise error(f"{source}: contains itself (a recursive YAML alias); refused")
        open_.add(key)
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        total = 1
        for item in items:
            total += size(item)
            if total > MAX_VALUES:
                raise error(f"{source}: expands to more than {MAX_VALUES} values "
                                f"(YAML aliases repeating aliases?); refused")
        open_.discard(key)
        sizes[key] = total
        return total

    try:
        size(raw)
    except RecursionError:
        raise error(f"{source}: nested too deeply") from None
