"""The root command group builds a group when it is looked up (commands/lazy_groups.py).

What the user sees must be what Typer shows when every group is registered up
front (cli.py before it was lazy): the reference here is such an eager app,
built from the same groups and commands with `add_typer` / `command`.
"""
from __future__ import annotations

import typer
import typer.main
from typer.testing import CliRunner

from visiontk import cli
from visiontk.commands.errors import OneLineUsageErrors


def _eager_app() -> typer.Typer:
    app = typer.Typer(name="visiontk", help=cli.app.info.help, no_args_is_help=True, pretty_exceptions_enable=False,
                      add_completion=False, cls=OneLineUsageErrors)
    app.callback()(cli._main)
    for name, load in cli._Root.groups.items():
        app.add_typer(load(), name=name)
    for name, load in cli._Root.commands_to_load.items():
        app.command(name)(load())
    return app


def _run(app: typer.Typer, args: list[str]):
    result = CliRunner().invoke(app, args, prog_name="visiontk", terminal_width=100)
    return result.exit_code, result.stdout, result.stderr


def test_root_lists_and_suggests_as_an_eager_build():
    eager = _eager_app()
    for args in (["--help"], [], ["clasify", "predict"], ["expor"], ["classify", "--help"],
                 ["transfer", "embed", "--help"], ["merge", "--help"], ["--version"]):
        assert _run(cli.app, args) == _run(eager, args), args
    code, _, err = _run(cli.app, ["expor"])
    assert code == 2 and "Did you mean 'export', 'report'?" in err


def test_a_group_is_built_when_looked_up():
    root = typer.main.get_command(cli.app)
    names = ["export", "merge", "report", "classify", "detect", "segment", "transfer", "recipes", "backbones",
             "data", "weights", "model"]
    assert list(root.commands) == names  # known, in --help's order, without building any
    assert root.commands.built() == []
    assert "predict" in root.commands["classify"].commands
    assert root.commands.built() == ["classify"]
    assert "detect" in root.commands and "nope" not in root.commands
    assert root.commands.built() == ["classify"]
