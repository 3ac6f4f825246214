"""Printing a model summary (engine/summary.py): a table on stdout, or one JSON document."""
from __future__ import annotations

import sys

from rich.table import Table

from visiontk.console import out_console, print_table
from visiontk.outputs.json_text import dumps


def print_summary(summary, title: str, json_out: bool) -> None:
    from visiontk.backbones.receptive_field import format_size
    from visiontk.engine.summary import format_bytes, format_number, jump_text

    if json_out:
        sys.stdout.write(dumps({"model": title, **summary.to_dict(), "layers": [r.to_dict() for r in summary.rows]})
                         + "\n")
        return
    table = Table(title=f"{title}, input {'x'.join(map(str, summary.input_shape))}", show_header=True)
    for col in ("layer", "type", "output", "params", "mult-adds", "stride", "RF", "jump", "start"):
        table.add_column(col, justify="right" if col not in ("layer", "type", "output") else "left")
    top = min((r.depth for r in summary.rows), default=1)
    for r in summary.rows:
        f = r.field
        start = "-" if f is None or f.covers_input else _pair_text(f.start)
        table.add_row(
            "  " * (r.depth - top) + r.name + (f" (call {r.call + 1})" if r.call else ""), r.kind,
            "x".join(map(str, r.shape)) if r.shape else "-",
            f"{r.params:,}" if r.params else "-", format_number(r.mult_adds) if r.mult_adds else "-",
            "-" if r.stride is None else f"{r.stride:g}",
            format_size(f) + ("" if f is None or f.aligned else " *"), jump_text(f), start)
    m = summary.memory
    table.caption = (
        f"params {summary.params:,} ({summary.trainable_params:,} trainable) | mult-adds {format_number(summary.mult_adds)}"
        f" per image | forward+backward at batch {summary.batch_size}: ~{format_bytes(m['total'])} (activations and their "
        f"gradients {format_bytes(m['activations_fwd_bwd'])}, weights {format_bytes(m['params'])} + gradients "
        f"{format_bytes(m['param_grads'])}, input {format_bytes(m['input'])}; no optimizer state)"
        + ("\nRF *: paths merged here are not centred on the same pixel (Araujo et al. 2019: the field is their union)"
           if any(r.field is not None and not r.field.aligned for r in summary.rows) else ""))
    print_table(table, out_console)


def _pair_text(pair) -> str:
    a, b = (f"{float(v):g}" for v in pair)
    return a if a == b else f"{a},{b}"
