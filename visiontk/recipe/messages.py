"""pydantic's validation errors as the one line a user reads.

    <file>: '<key.path>' must be <what the schema says>, got <the value as written>
    <file>: unknown key 'train.lrr' (did you mean 'train.lr'?)
    <file>: missing required key 'stages[0].epochs'

pydantic reports every error of a mapping with its own wording and, inside a
Union, one error per member under a tag of its own. The user needs one: the
first in file order, phrased from the schema itself (its types, bounds,
`Expected` words and `rule`s), naming the value as it was written.
"""
from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Literal, Union

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from visiontk.errors import UserError
from visiontk.recipe.fields import RULE_ERROR, STRICT_VALUES, Expected

_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_LENGTH_ERRORS = {"too_short", "too_long", "string_too_short", "string_too_long"}


def recipe_error(source: str, key: str, phrase: str) -> UserError:
    """The one-line error about key `key` of a recipe (also for checks that span sections)."""
    return UserError(f"{source}: '{key}' {phrase}")


def validation_error(error: ValidationError, schema: type, raw: Any, source: str) -> UserError:
    """The first error of `error` (in the order of the file) as one line."""
    first = min(error.errors(), key=lambda e: _file_order(raw, e["loc"]))
    return UserError(f"{source}: {_shorten_value(_describe(first, schema, raw, []))}")


_MAX_VALUE_CHARS = 120


def _shorten_value(message: str) -> str:
    # A value of a million items (a tampered checkpoint's class list) must not
    # become a million-character line: its start says enough.
    said, sep, value = message.partition(", got ")
    if len(value) <= _MAX_VALUE_CHARS:
        return message
    return f"{said}{sep}{value[:_MAX_VALUE_CHARS]}... ({len(value)} characters)"


# -- the annotation at an error's location ------------------------------------

def _strip(tp: Any) -> tuple[Any, list, bool]:
    """(the type under Annotated / Optional, the metadata met on the way, nullable)."""
    metadata: list = []
    nullable = False
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp, *extra = typing.get_args(tp)
            for item in extra:
                metadata += item.metadata if isinstance(item, FieldInfo) else [item]
            continue
        if _is_union(tp):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) < len(typing.get_args(tp)):
                nullable = True
                tp = members[0] if len(members) == 1 else Union[tuple(members)]
                if len(members) == 1:
                    continue
        return tp, metadata, nullable


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _container(tp: Any) -> type | None:
    """dict or list when values of `tp` are mappings or lists, else None."""
    origin = typing.get_origin(tp) or tp
    if _is_model(tp) or origin is dict:
        return dict
    return list if origin is list else None


def _expected(metadata: list) -> str | None:
    return next((m.text for m in metadata if isinstance(m, Expected)), None)


def type_name(tp: Any) -> str:
    """How an error message names a type: 'an integer', "'sgd' | 'adam'", 'a list of a number'."""
    tp, metadata, nullable = _strip(tp)
    name = _expected(metadata)
    if name is None:
        args = typing.get_args(tp)
        if typing.get_origin(tp) is Literal:
            name = " | ".join(repr(a) for a in args)
        elif _is_union(tp):
            name = " or ".join(type_name(a) for a in args)
        elif typing.get_origin(tp) is list:
            name = f"a list of {type_name(args[0])}" if args else "a list"
        elif _container(tp) is dict or isinstance(tp, typing.TypeVar):
            name = "a mapping"
        else:
            name = {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list"}.get(
                tp, str(tp))
    return name + " (or null)" * nullable


# -- one error, one line -------------------------------------------------------

def _path(parts: list) -> str:
    """The quoted key path: 'stages[0].lr' (repr, so a key with a newline stays on the line)."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{part}"
    return repr(out)


def _child(value: Any, part: Any) -> Any:
    if isinstance(value, dict):
        return value.get(part)
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return None


def _file_order(raw: Any, loc: tuple) -> tuple:
    """Where an error's key comes in the file: errors are reported in reading order."""
    order, value = [], raw
    for part in loc:
        keys = list(value) if isinstance(value, dict) else range(len(value)) if isinstance(value, list) else []
        order.append(keys.index(part) if part in keys else len(keys))
        value = _child(value, part)
    return tuple(order)


def _describe(error: dict, schema: Any, raw: Any, prefix: list) -> str:
    """'<path>' <phrase> for one pydantic error, walking `schema` and `raw` along its location."""
    loc, kind = list(error["loc"]), error["type"]
    declared = schema  # the annotation as written (Optional kept: it names the type)
    tp, metadata, _ = _strip(declared)
    parts, value = list(prefix), raw
    said: tuple[list, str, Any] | None = None  # the outermost Expected on the way
    for part in loc:
        if said is None and _expected(metadata):
            said = (list(parts), _expected(metadata), value)
        if _is_union(tp):  # `part` is pydantic's tag of a member
            return _union(tp, declared, parts, value, said)
        if _is_model(tp):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return _unknown_key(tp, parts, part)
            declared, metadata = field.annotation, list(field.metadata)
        elif typing.get_origin(tp) in (list, dict) and part != "[key]":
            args = typing.get_args(tp)
            declared, metadata = (args[-1] if args else Any), []
        else:
            break
        parts.append(part)
        value = _child(value, part)
        tp, more, _ = _strip(declared)
        metadata += more
    if kind == "missing":
        return f"missing required key {_path(parts)}"
    if said is None and _expected(metadata):
        said = (parts, _expected(metadata), value)
    if said is not None:
        return f"{_path(said[0])} must be {said[1]}, got {said[2]!r}"
    if _is_union(tp):
        return _union(tp, declared, parts, value, None)
    if kind == RULE_ERROR:
        ctx = error["ctx"]
        if "key" in ctx:
            parts, value = parts + [ctx["key"]], _child(value, ctx["key"])
        got = f", got {value!r}" if ctx["show_value"] else ""
        return f"{_path(parts)} {ctx['requirement']}{got}"
    if kind == "finite_number":
        return f"{_path(parts)} must be a finite number, got {error['input']!r}"
    if kind in _BOUND_ERRORS:
        return f"{_path(parts)} must be {_bounds(metadata, tp)}, got {value!r}"
    if kind in _LENGTH_ERRORS:
        ctx = error.get("ctx", {})
        if ctx.get("min_length") == 1 and not value:
            return f"{_path(parts)} must not be empty, got {value!r}"
        return f"{_path(parts)} must have {_length(ctx)} values, got {value!r}"
    if kind == "literal_error":
        return f"{_path(parts)} must be one of {type_name(declared)}, got {value!r}"
    return f"{_path(parts)} must be {type_name(declared)}, got {value!r}"


def _union(tp: Any, declared: Any, parts: list, value: Any, said) -> str:
    """An error inside a Union: a value of the kind exactly one member takes (a mapping,
    a list, or e.g. a string) is checked against that member, so the message names the
    key inside it ('data.options.images.val') or that member's own rule ("must not be
    empty"); otherwise the Union is named as a whole."""
    if said is not None:
        return f"{_path(said[0])} must be {said[1]}, got {said[2]!r}"
    fits = [m for m in typing.get_args(tp) if _takes(m, value)]
    if len(fits) == 1:
        member = fits[0]
        adapter = TypeAdapter(member) if _is_model(member) else TypeAdapter(member, config=STRICT_VALUES)
        try:
            adapter.validate_python(value)
        except ValidationError as e:
            first = min(e.errors(), key=lambda err: _file_order(value, err["loc"]))
            return _describe(first, member, value, parts)
    return f"{_path(parts)} must be {type_name(declared)}, got {value!r}"


def _takes(member: Any, value: Any) -> bool:
    """Whether `value` is of the kind a Union member takes: a mapping or a list for a
    container member, else exactly the member's plain type (True is not taken for an int)."""
    tp = _strip(member)[0]
    given = dict if isinstance(value, dict) else list if isinstance(value, list) else None
    if given is not None:
        return _container(tp) is given
    return isinstance(tp, type) and _container(tp) is None and type(value) is tp


def _unknown_key(model: type[BaseModel], parts: list, key: Any) -> str:
    names = list(model.model_fields)
    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
    if close:
        hint = f" (did you mean {_path(parts + close)}?)"
    else:
        hint = f" (valid keys: {', '.join(names)})" if names else " (this section takes no keys)"
    return f"unknown key {_path(parts + [str(key)])}{hint}"


def _bounds(metadata: list, tp: Any) -> str:
    """'>= 1', '> 0', 'in [0, 1)', 'in 0..255' (an integer range) from the Ge/Gt/Le/Lt bounds of a field."""
    low = next(((m.ge, "[") for m in metadata if isinstance(m, Ge)), None) or next(
        ((m.gt, "(") for m in metadata if isinstance(m, Gt)), None)
    high = next(((m.le, "]") for m in metadata if isinstance(m, Le)), None) or next(
        ((m.lt, ")") for m in metadata if isinstance(m, Lt)), None)
    if low and high:
        if tp is int and (low[1], high[1]) == ("[", "]"):
            return f"in {low[0]}..{high[0]}"
        return f"in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
    if low:
        return f"{'>=' if low[1] == '[' else '>'} {low[0]:g}"
    return f"{'<=' if high[1] == ']' else '<'} {high[0]:g}"


def _length(ctx: dict) -> str:
    low, high = ctx.get("min_length"), ctx.get("max_length")
    if low is not None and low == high:
        return str(low)
    if low is not None and high is not None:
        return f"{low} to {high}"
    return f"at least {low}" if low is not None else f"at most {high}"
