"""The building blocks of every recipe section, shared by the core schema and the tasks' sections.

Recipes are read strictly, as the YAML says them: an integer is not a float
string, `yes` is not a bool, a key nobody reads is an error. What pydantic's
bounds (`Field(ge=..)`) and types cannot say is said by `Expected` (the words
an error message uses) or checked by a `rule`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Callable

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

# The error type of every check written here; messages.py renders it.
RULE_ERROR = "recipe_rule"

_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

# How recipe values are read: as typed (no "3" for 3, no 1 for true), numbers finite.
STRICT_VALUES = ConfigDict(strict=True, allow_inf_nan=False)


class Section(BaseModel):
    """A mapping of a recipe: unknown keys refused, values taken as they are typed.

    `key:` with nothing after it (None) means the section's defaults, as an
    empty mapping does.
    """

    # defer_build: a section's validator is built when it first validates, not when
    # its class is defined: predict validates a checkpoint's recipe, never the
    # sections of other modalities' or formats' options it imports.
    model_config = ConfigDict(extra="forbid", defer_build=True, **STRICT_VALUES)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_defaults(cls, data: Any) -> Any:
        return {} if data is None else data

    def __reduce__(self):
        # A parametrised section (Recipe[DetectHeadOptions, ...]) is a class pickle
        # cannot find by name: it is rebuilt from its generic class, its arguments
        # and its values, so recipes pickle as they did (e.g. for spawned workers).
        generic = type(self).__pydantic_generic_metadata__
        if generic["origin"] is None:
            return super().__reduce__()
        return _rebuild, (generic["origin"], generic["args"], self.model_dump())


def _rebuild(origin: type[Section], args: tuple, values: dict) -> Section:
    return origin[args].model_validate(values)


class EmptySection(Section):
    """A section with no keys of its own (e.g. a loss without options): any key in it is an error."""


def section() -> Any:
    """The default of a Section-typed field: validated from `{}`, so the field's
    actual (possibly task-parametrised) model builds it."""
    return Field(default_factory=dict, validate_default=True)


@dataclass(frozen=True)
class Expected:
    """What a value must be, in words, where its type and bounds would say it badly
    (e.g. 'an integer >= 8 or a list [height, width]'). Any error at or under an
    annotated value is reported as "must be <text>, got <the value>"."""

    text: str


def rule_error(requirement: str, key: str | None = None, show_value: bool = True) -> PydanticCustomError:
    """The error a check raises: "'<path>[.key]' <requirement>[, got <value>]"."""
    context = {"requirement": requirement, "show_value": show_value}
    if key is not None:
        context["key"] = key
    return PydanticCustomError(RULE_ERROR, "{requirement}", context)


def rule(check: Callable[[Any], bool], requirement: str) -> AfterValidator:
    """A value check types and bounds cannot state (e.g. 'must have 1 or 3 values')."""

    def _check(value: Any) -> Any:
        if not check(value):
            raise rule_error(requirement)
        return value

    return AfterValidator(_check)


def _yaml_number(value: Any) -> Any:
    if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
        # YAML 1.1 reads 1e-3 (no dot) as a string; users mean a number.
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            float(value)
        except OverflowError:  # an integer too large for a float
            raise rule_error("must be a finite number") from None
    return value


# A float field: an int or float, or a YAML 1.1 exponent string; never a bool,
# never inf or nan (they would only make the loss NaN later).
Number = Annotated[float, BeforeValidator(_yaml_number)]
Fraction = Annotated[Number, Field(ge=0, lt=1)]  # dropout, label smoothing, momentum
# A mapping passed on unchecked (e.g. model.backbone_options, read by the backbone's builder).
AnyMapping = Annotated[dict, BeforeValidator(lambda v: {} if v is None else v)]
