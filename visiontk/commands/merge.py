"""`visiontk merge PART...`: the outputs of `predict --shard I/N` runs as one result."""
from __future__ import annotations

from typing import List, Optional

import typer

from visiontk.commands.errors import handle_errors
from visiontk.console import info, plural


@handle_errors
def merge(
    parts: List[str] = typer.Argument(..., help="The outputs of predict --shard 0/N, 1/N ... N-1/N, in that order "
                                                "(e.g. preds.{0..3}.jsonl)."),
    out: Optional[str] = typer.Option(None, help="Merged file (default stdout)."),
    overwrite: bool = typer.Option(False, help="Replace an existing --out file."),
):
    """Merge sharded predictions: jsonl and csv records back in input order (what one process
    writes); COCO results arrays joined. Mask, label and drawn-image files need no merge."""
    from visiontk.outputs.merge import merge_parts
    from visiontk.outputs.output_file import OutputFile

    kind, count = merge_parts(parts, OutputFile(out, overwrite))
    info(f"merged {plural(len(parts), 'part')}: {plural(count, 'detection' if kind == 'coco' else 'record')} ({kind})")
