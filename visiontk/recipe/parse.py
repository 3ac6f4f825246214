"""A raw recipe mapping -> a validated Recipe, given the task's sections.

One pydantic validation of the whole mapping against
`Recipe[task head, task loss, options of data.format]`; its errors become one
line (messages.py). Checks that span sections and need the task (e.g. detect's
square input) are the task's, after this.
"""
from __future__ import annotations

from pydantic import ValidationError

from visiontk.errors import UserError
from visiontk.recipe.expansion import check_expansion
from visiontk.recipe.messages import recipe_error, validation_error
from visiontk.recipe.schema import DataConfig, Recipe
from visiontk.recipe.sections import TaskSections


def recipe_task(raw: dict, source: str = "recipe") -> str:
    """The task a raw recipe names: what decides which sections validate the rest."""
    if "task" not in raw:
        raise UserError(f"{source}: missing required key 'task'")
    if not isinstance(raw["task"], str):
        raise UserError(f"{source}: 'task' must be a string, got {raw['task']!r}")
    return raw["task"]


def parse_recipe(raw: dict, sections: TaskSections, source: str = "recipe") -> Recipe:
    # Every recipe passes here (files with their --set values, checkpoints' recipes) before anything walks it.
    check_expansion(raw, source)
    schema = Recipe[sections.head, sections.loss, _options_model(raw, sections, source)]
    try:
        return schema.model_validate(raw, context={"source": source})
    except ValidationError as e:
        raise validation_error(e, schema, raw, source) from None


def _options_model(raw: dict, sections: TaskSections, source: str) -> type:
    """The model of data.options: the one of data.format, which must be a format of the task."""
    data = raw.get("data")
    if data is not None and not isinstance(data, dict):
        # Validation reports that 'data' is not a mapping; any options model will do.
        return next(iter(sections.data_options.values()))
    fmt = (data or {}).get("format", DataConfig.model_fields["format"].default)
    if isinstance(fmt, str) and fmt in sections.data_options:
        return sections.data_options[fmt]
    formats = list(sections.data_options)
    allowed = repr(formats[0]) if len(formats) == 1 else "one of " + ", ".join(map(repr, formats))
    raise recipe_error(source, "data.format", f"must be {allowed} for {sections.task}, got {fmt!r}")
