"""Dotted `--set key=value` overrides, applied to the raw mapping before validation."""
from __future__ import annotations

from typing import Any

from visiontk.errors import UserError


def parse_override(text: str) -> tuple[str, Any]:
    """`train.lr=0.01` -> ("train.lr", 0.01); the value is parsed as YAML."""
    import yaml  # here: predict, which takes no --set, needs no YAML

    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. train.lr=0.01")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"--set {text!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError) as e:
        # `{split}/image` (a path template) starts like a YAML mapping: say how to give it as text.
        # A mistyped list or mapping gets the same line: "if text" leaves the choice to the user.
        hint = (f"; if {raw.strip()} is meant as text, quote it: --set '{key}=\"{raw.strip()}\"'"
                if raw.strip()[:1] in "{[" else "")
        raise UserError(f"--set {text!r}: value is not valid YAML ({str(e).splitlines()[0]}){hint}") from None
    return key, value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for text in overrides:
        key, value = parse_override(text)
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {text!r}: '{part}' is not a mapping")
            node = child
        node[parts[-1]] = value
    return raw
