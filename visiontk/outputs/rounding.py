"""Rounding a whole tensor of numbers for a record, with Python's `round` as the reference.

Records round coordinates and scores (`round(v, 2)`, `round(s, 5)`) so that
files stay short. Calling `round` per value costs about a microsecond each
(thousands per batch for detection); this does the same in three tensor
operations and gives the very same Python floats.

Why the results are identical for values that come from float32 tensors: a
float32 has 24 significant bits and 10**d (d <= 5) at most 17 (100000 =
2**5 x 3125), so `v * 10**d` in float64 is exact; `torch.round` rounds that
exact value half to even, as Python's correctly rounded `round` does; and the
float64 division by 10**d is correctly rounded, as Python's conversion of the
rounded decimal back to a float is. (tests/test_detect_batch_records.py checks
it on millions of values, ties included.)
"""
from __future__ import annotations

import torch

MAX_DIGITS = 5


def rounded(values: torch.Tensor, digits: int) -> torch.Tensor:
    """`round(v, digits)` of every element, as float64 (call `.tolist()` for the floats).

    `values` must hold float32 (or narrower) numbers: wider ones are rounded to
    float32 first, as the exactness argument needs."""
    if not 0 <= digits <= MAX_DIGITS:
        raise ValueError(f"rounded: digits must be in [0, {MAX_DIGITS}], got {digits}")
    scale = float(10 ** digits)
    return torch.round(values.float().double() * scale) / scale
