"""Recipes: one YAML file that says everything about a run.

A recipe is read with `yaml.safe_load`, dotted `--set key=value` overrides
are applied to the raw mapping, and the result is validated once, by pydantic,
into typed sections. This package is the core layer: it knows the shared
schema and how to validate given the task's own sections (`TaskSections`:
`model.head`, `loss`, `data.options`), never the tasks themselves.
`visiontk.tasks.recipes` resolves a recipe's task and is what the engine and
the commands call (`load_recipe`, `recipe_from_dict`).

    fields.py     Section (extra keys forbidden, strict), EmptySection, Number, Expected, rule
    schema.py     the shared sections and Recipe[Head, Loss, Options]
    sections.py   TaskSections, and the registry of data-format options models
    parse.py      a raw mapping -> Recipe, given the sections
    expansion.py  the limit on values a mapping holds once YAML aliases are expanded
    messages.py   pydantic errors -> one line naming the file and the key
    overrides.py  --set key=value
    files.py      shipped recipes, YAML reading and writing
"""
from visiontk.recipe.fields import AnyMapping, EmptySection, Expected, Fraction, Number, Section, rule, rule_error, section
from visiontk.recipe.files import RECIPES_DIR, dump_recipe, list_recipes, read_recipe, read_yaml, resolve_recipe_path
from visiontk.recipe.messages import recipe_error
from visiontk.recipe.overrides import apply_overrides, parse_override
from visiontk.recipe.parse import parse_recipe, recipe_task
from visiontk.recipe.schema import (
    DataConfig,
    ModelConfig,
    OutputConfig,
    Recipe,
    StageConfig,
    SynthConfig,
    TrainConfig,
)
from visiontk.recipe.sections import TaskSections, format_options, register_format_options

__all__ = [
    "RECIPES_DIR", "AnyMapping", "DataConfig", "EmptySection", "Expected", "Fraction", "ModelConfig", "Number", "OutputConfig",
    "Recipe", "Section", "StageConfig", "SynthConfig", "TaskSections", "TrainConfig", "apply_overrides",
    "dump_recipe", "format_options", "list_recipes", "parse_override", "parse_recipe", "read_recipe", "read_yaml",
    "recipe_error", "recipe_task", "register_format_options", "resolve_recipe_path", "rule", "rule_error", "section",
]
