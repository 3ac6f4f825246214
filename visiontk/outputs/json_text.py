"""JSON as every command writes it: non-finite numbers become null.

Python's json writes NaN and Infinity, which are not JSON: jq, JavaScript and
most parsers reject the whole line. A NaN comes from a broken model (a
checkpoint with NaN weights gives "prob": NaN) or an undefined metric; null says
"no number" in a form every reader takes.
"""
from __future__ import annotations

import json
import math
from typing import Any


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def dumps(obj: Any, **kwargs) -> str:
    """json.dumps with NaN and +-Infinity written as null (the cleaning pass runs only when one is there)."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(_finite_or_null(obj), allow_nan=False, **kwargs)
