"""Where visiontk keeps what it computed once and reuses: models exported for the
onnxruntime and OpenVINO backends, and the measured precision/backend choices.

VISIONTK_CACHE_DIR overrides the place (default: $XDG_CACHE_HOME/visiontk, else
~/.cache/visiontk). Everything is written atomically (engine/checkpoint.py's
atomic writes: a temp file renamed over the target), so two runs at once, or one
stopped half-way, never leave a torn file: the worst case is work done twice.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "VISIONTK_CACHE_DIR"


def cache_dir(*parts: str) -> Path:
    root = os.environ.get(ENV)
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "visiontk")
    return Path(root, *parts)


def read_json(path: Path) -> dict:
    """The JSON object in `path`; {} when it is missing or unreadable (a cache is never an error)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
