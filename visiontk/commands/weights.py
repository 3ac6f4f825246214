"""`visiontk weights list|check`: ImageNet weights on this machine."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from visiontk.commands.errors import handle_errors
from visiontk.console import info, out_console, plural, print_table
from visiontk.outputs.json_text import dumps

app = typer.Typer(help="Pretrained ImageNet weights: which exist, which are cached, are they intact.", no_args_is_help=True)


@app.command("list")
@handle_errors
def list_(json_out: bool = typer.Option(False, "--json", help="One JSON object per weights on stdout."),
          all_weights: bool = typer.Option(False, "--all", help="Every torchvision weights version, not only the default.")):
    """Backbones with ImageNet weights, the file each needs and whether it is on this machine."""
    from visiontk.backbones.pretrained import checkpoints_dir
    from visiontk.backbones.weights_cache import imagenet_weights

    rows = [r for r in imagenet_weights() if all_weights or r["default"]]
    if json_out:
        for r in rows:
            sys.stdout.write(dumps(r) + "\n")
        return
    table = Table(show_header=True)
    for col in ("backbone", "weights", "file", "source", "present"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["backbone"], r["weights"] + (" (imagenet)" if r["default"] else ""), r["file"] or "-",
                      r["source"], "[green]yes[/green]" if r["present"] else "no")
    print_table(table, out_console)
    info(f"torchvision weights are read from {checkpoints_dir()} ($TORCH_HOME/hub/checkpoints); "
         f"nothing is downloaded at run time")


@app.command("check")
@handle_errors
def check(files: Optional[List[Path]] = typer.Argument(None, help="Weights files to check (default: every cached one)."),
          json_out: bool = typer.Option(False, "--json", help="One JSON object per file on stdout.")):
    """Verify weights files against the SHA-256 prefix in their names (as torch.hub does)."""
    from visiontk.backbones.pretrained import checkpoints_dir
    from visiontk.backbones.weights_cache import cached_files, check_file
    from visiontk.errors import JobError, UserError

    paths = list(files) if files else cached_files()
    for p in paths:
        if not p.is_file():
            raise UserError(f"{p}: no such file")
    if not paths:
        info(f"no ImageNet weights in {checkpoints_dir()} and no weights package installed: nothing to check")
        return
    rows = [check_file(p) for p in paths]
    if json_out:
        for r in rows:
            sys.stdout.write(dumps(r) + "\n")
    else:
        table = Table(show_header=True)
        for col in ("file", "expected", "sha256", "status"):
            table.add_column(col)
        for r in rows:
            colour = "green" if r["status"] == "ok" else "red" if r["status"].startswith(("corrupt", "unreadable")) else "yellow"
            table.add_row(r["file"], r["expected"] or "-", (r["sha256"] or "-")[:16] + "…",
                          f"[{colour}]{r['status']}[/{colour}]")
        print_table(table, out_console)
    bad = [r for r in rows if r["status"].startswith(("corrupt", "unreadable"))]
    if bad:
        raise JobError(f"{len(bad)} of {plural(len(rows), 'weights file')} failed the check (first: {bad[0]['file']}: {bad[0]['status']}); "
                       f"delete and replace them")
