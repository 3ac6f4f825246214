"""Sliding-window prediction for images larger than the network's input.

Each output pixel is taken from the one tile in which it lies farthest from
an interior tile edge (image borders are not tile edges: the whole-image
prediction sees the same border). Neighbouring tiles overlap by at least
``2*overlap`` pixels and the owned regions are split at the middle of each
overlap, so every pixel is at least ``overlap`` pixels away from the edges of
the tile it comes from. For a translation-equivariant network (stride 1,
"same" padding) whose receptive-field radius is <= ``overlap``, the stitched
logits then equal the whole-image logits exactly. Networks with a stride
> 1 are only equivariant to shifts by their stride, so the result is then
close but not bit-identical.

Hard central cropping was chosen over blending windows because it is exact
in that case and needs no per-pixel weight normalisation.
"""
from __future__ import annotations

from typing import Callable

import torch

from visiontk.errors import UserError


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile start offsets along one axis; the last tile is shifted to end at ``length``."""
    if length <= tile:
        return [0]
    step = tile - 2 * overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)  # strictly after the previous start
    return starts


def owned_ranges(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` of the image each tile supplies: split at the middle of each overlap."""
    tile = min(tile, length)
    bounds = [0] + [(a + b + tile) // 2 for a, b in zip(starts, starts[1:])] + [length]
    return list(zip(bounds, bounds[1:]))


@torch.no_grad()
def predict_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    tile: int,
    overlap: int,
    num_classes: int,
    batch_size: int = 4,
) -> torch.Tensor:
    """Logits ``[1, K, H, W]`` of ``image`` ``[1, C, H, W]`` predicted tile by tile.

    ``fn`` maps ``[B, C, h, w]`` to ``[B, K, h, w]``. Tiles are ``tile × tile``
    (or the image side where the image is smaller) and all the same size, so
    they are run ``batch_size`` at a time.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise UserError(f"predict_tiled expects one image [1, C, H, W], got {tuple(image.shape)}")
    if overlap < 0 or tile < 2 * overlap + 1:
        raise UserError(f"tile ({tile}) must be larger than 2 × overlap ({overlap})")
    _, _, h, w = image.shape
    th, tw = min(tile, h), min(tile, w)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    y_own, x_own = owned_ranges(ys, tile, h), owned_ranges(xs, tile, w)
    jobs = [(y, x, yr, xr) for y, yr in zip(ys, y_own) for x, xr in zip(xs, x_own)]

    out = image.new_empty((1, num_classes, h, w))
    for i in range(0, len(jobs), batch_size):
        chunk = jobs[i : i + batch_size]
        batch = torch.cat([image[:, :, y : y + th, x : x + tw] for y, x, _, _ in chunk])
        logits = fn(batch)
        if logits.shape != (len(chunk), num_classes, th, tw):
            raise UserError(
                f"tile model returned {tuple(logits.shape)}, expected "
                f"{(len(chunk), num_classes, th, tw)}"
            )
        for k, (y, x, (y0, y1), (x0, x1)) in enumerate(chunk):
            out[0, :, y0:y1, x0:x1] = logits[k, :, y0 - y : y1 - y, x0 - x : x1 - x]
    return out
