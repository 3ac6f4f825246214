"""The root command group, whose subcommands are built when first looked up.

Typer builds every registered group at start-up, and building one imports its
command module (and what that imports: the recipe schema for `transfer`, rich
tables for `recipes`, ...). `visiontk classify predict` needs the `classify`
group alone: the others are built only when asked for by name, or all at once
when they are listed (`visiontk --help`, completion, an unknown command's
suggestions). Each is built by Typer itself, as `add_typer` / `command` would
have registered it, so the help, options and errors are the same.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from typing import Callable, Iterator

import typer
import typer.main

from visiontk.commands.errors import OneLineUsageErrors

# name -> a function returning the Typer app of a group (or, for COMMANDS, a command's function).
Loader = Callable[[], object]


class LazyCommands(MutableMapping):
    """A group's `commands` mapping whose values are built on first access; its keys
    (names, in registration order) are known without building anything."""

    def __init__(self, built: dict, loaders: dict[str, Callable[[], object]]):
        self._names = [*built, *(n for n in loaders if n not in built)]
        self._built = dict(built)
        self._loaders = loaders

    def __getitem__(self, name: str):
        if name not in self._built:
            if name not in self._loaders:
                raise KeyError(name)
            self._built[name] = self._loaders[name]()
        return self._built[name]

    def __setitem__(self, name: str, command) -> None:
        if name not in self._names:
            self._names.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._built.pop(name, None)
        self._loaders.pop(name, None)

    def __contains__(self, name: object) -> bool:  # without building it
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def built(self) -> list[str]:
        """The names built so far (for tests)."""
        return [n for n in self._names if n in self._built]


class LazyGroups(OneLineUsageErrors):
    """Set on a subclass: `app` (the root Typer, for its settings), `commands_to_load`
    and `groups` (name -> loader), each in the order `--help` lists them."""

    app: typer.Typer
    groups: dict[str, Loader] = {}
    commands_to_load: dict[str, Loader] = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Commands before groups, as Typer lists them.
        loaders = {name: (lambda name=name, load=load: self._command(name, load))
                   for name, load in self.commands_to_load.items()}
        loaders.update({name: (lambda name=name, load=load: self._group(name, load)) for name, load in self.groups.items()})
        self.commands = LazyCommands(dict(self.commands), loaders)

    def _group(self, name: str, load: Loader):
        shell = typer.Typer()
        shell.add_typer(load(), name=name)
        return typer.main.get_group_from_info(
            shell.registered_groups[0], pretty_exceptions_short=self.app.pretty_exceptions_short,
            rich_markup_mode=self.app.rich_markup_mode, suggest_commands=self.app.suggest_commands)

    def _command(self, name: str, load: Loader):
        shell = typer.Typer()
        shell.command(name)(load())
        return typer.main.get_command_from_info(
            shell.registered_commands[0], pretty_exceptions_short=self.app.pretty_exceptions_short,
            rich_markup_mode=self.app.rich_markup_mode)
