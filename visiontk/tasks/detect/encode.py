"""YOLO-v1 grid targets: boxes -> per-cell targets, and per-cell boxes -> image boxes.

Conventions shared by every module of the detector:

* boxes outside the grid code are normalised to the image: values in [0, 1];
* the grid tensor is indexed ``[..., row, col, ...]`` = ``[..., y, x, ...]``
  (the same order as an image tensor), so a cell's column comes from ``cx`` and
  its row from ``cy``;
* a cell box is ``(x, y, w, h)``: ``x, y`` the centre's offset inside its cell in
  cell units ([0, 1)), ``w, h`` the size relative to the whole image.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_convert

# Layout of one encoded target cell: x, y, w, h, objectness, then C one-hot classes.
TARGET_BOX = slice(0, 4)
TARGET_OBJ = 4
TARGET_CLS = 5


def cell_indices(centres: Tensor, S: int) -> Tensor:
    """Cell index of each normalised centre coordinate.

    ``floor(c * S)`` clamped to ``[0, S-1]``: a centre exactly on the right or
    bottom image border (c == 1.0) belongs to the last cell, not to a cell S
    that does not exist.
    """
    return (centres * S).floor().long().clamp_(0, S - 1)


def encode_targets(boxes: Tensor, labels: Tensor, S: int, C: int) -> Tensor:
    """Encode one image's boxes into a ``[S, S, 5 + C]`` YOLO-v1 target grid.

    boxes: ``[K, 4]`` normalised ``cx, cy, w, h``; labels: ``[K]`` class indices.
    Per cell: x offset, y offset (cell units, in [0, 1); exactly 1.0 only for
    a centre on the right/bottom image border, see `cell_indices`), w, h
    (image units), objectness 1/0, one-hot class.

    One cell holds one object in YOLO-v1. When several centres fall into the
    same cell we keep the largest box (by area, ties -> first in the input):
    it is the one most visible and the one whose loss would dominate anyway;
    the smaller ones are dropped for this image (the ceiling this puts on
    recall is why S should not be too small for the object density).
    """
    return encode_batch([(boxes, labels)], S, C)[0]


def _checked(boxes, labels) -> tuple[Tensor, Tensor]:
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.as_tensor(labels, dtype=torch.long, device=boxes.device).reshape(-1)
    if boxes.shape[0] != labels.shape[0]:
        raise ValueError(f"encode_targets: {boxes.shape[0]} boxes but {labels.shape[0]} labels")
    return boxes, labels


def encode_batch(samples: Sequence[tuple[Tensor, Tensor]], S: int, C: int) -> Tensor:
    """Encode a batch of ``(boxes cxcywh, labels)`` pairs into ``[N, S, S, 5 + C]``,
    each image as `encode_targets` says.

    The whole batch in one pass: the boxes of all images are concatenated and
    each goes to cell ``image * S * S + row * S + col`` of one flat grid, so a
    batch costs a few tensor ops instead of a few per image (per image they
    were ~8% of a detect/shapes training step).
    """
    n = len(samples)
    if n == 0:
        return torch.zeros(0, S, S, 5 + C)
    checked = [_checked(b, l) for b, l in samples]
    boxes = torch.cat([b for b, _ in checked])
    labels = torch.cat([l for _, l in checked])
    if labels.numel() and (labels.min() < 0 or labels.max() >= C):
        raise ValueError(f"encode_targets: labels must be in [0, {C}), got {labels.tolist()}")
    cells = n * S * S
    target = boxes.new_zeros(cells, 5 + C)
    K = boxes.shape[0]
    if K == 0:
        return target.view(n, S, S, 5 + C)
    image = torch.repeat_interleave(torch.arange(n, device=boxes.device),
                                    torch.tensor([len(l) for _, l in checked], device=boxes.device))
    col = cell_indices(boxes[:, 0], S)
    row = cell_indices(boxes[:, 1], S)
    flat = image * (S * S) + row * S + col

    # Vectorised "largest box wins" per cell: the max area per cell, then the
    # lowest index among the boxes reaching it, so every cell is written once
    # (index_put with duplicate indices has no defined winner). Boxes keep
    # their order within each image, so the lowest index is the image's first.
    area = boxes[:, 2] * boxes[:, 3]
    best_area = area.new_full((cells,), -1.0).scatter_reduce(0, flat, area, reduce="amax")
    k = torch.arange(K, device=boxes.device)
    candidate = torch.where(area == best_area[flat], k, K)
    winner = torch.full((cells,), K, dtype=torch.long, device=boxes.device)
    winner = winner.scatter_reduce(0, flat, candidate, reduce="amin")
    keep = winner[flat] == k

    b, f = boxes[keep], flat[keep]
    cell = torch.stack([b[:, 0] * S - col[keep], b[:, 1] * S - row[keep], b[:, 2], b[:, 3]], dim=1)
    target[f, TARGET_BOX] = cell
    target[f, TARGET_OBJ] = 1.0
    target[f, TARGET_CLS + labels[keep]] = 1.0
    return target.view(n, S, S, 5 + C)


def decode_grid_boxes(cell_boxes: Tensor, out_fmt: str = "cxcywh", per_box: bool = False) -> Tensor:
    """Cell boxes ``(x, y, w, h)`` -> normalised image boxes (``cxcywh`` or ``xyxy``).

    ``cell_boxes`` is ``[..., S, S, 4]``, or ``[..., S, S, B, 4]`` with
    ``per_box=True`` (the B predictors of a cell share its offset). ``w, h`` are
    the real sizes: a head predicts sqrt(w), sqrt(h) and the caller squares them.
    """
    grid_dim = -4 if per_box else -3
    S = cell_boxes.shape[grid_dim]
    if cell_boxes.shape[grid_dim + 1] != S:
        raise ValueError(f"decode_grid_boxes: expected a square grid, got shape {tuple(cell_boxes.shape)}")
    steps = torch.arange(S, device=cell_boxes.device, dtype=cell_boxes.dtype)
    # Offsets broadcast against the x / y channel, whose trailing dims are
    # (row, col) or (row, col, B).
    trailing = (1,) if per_box else ()
    row = steps.view(S, 1, *trailing)
    col = steps.view(S, *trailing)
    cx = (cell_boxes[..., 0] + col) / S
    cy = (cell_boxes[..., 1] + row) / S
    out = torch.stack([cx, cy, cell_boxes[..., 2], cell_boxes[..., 3]], dim=-1)
    if out_fmt == "cxcywh":
        return out
    return box_convert(out, in_fmt="cxcywh", out_fmt=out_fmt)
