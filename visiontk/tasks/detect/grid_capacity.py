"""How many objects of a data set a YOLO-v1 grid can hold at all: the ceiling on its recall.

Training encodes each image with `encode_targets`, which keeps one object per
grid cell (the largest; the others get no target), so an object whose centre
shares a cell with a larger one is never learnt, and at predict time a cell's
B boxes share one class. Counted here with that same encoder, on the boxes as
read (no augmentation), at the recipe's S: the objects it drops are the
recall a perfect model of this head still misses. ``beyond_b`` also counts the
objects beyond the B boxes of their cell, the bound B alone would set.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_convert

from visiontk.console import plural
from visiontk.data.formats.records import AnnotatedImage

from .encode import TARGET_OBJ, cell_indices, encode_targets


@dataclass
class GridCapacity:
    S: int
    B: int
    objects: int = 0
    lost: int = 0  # objects the targets leave out: they share a cell with a larger one
    beyond_b: int = 0  # objects beyond the B boxes of their cell
    images: list[Path] = field(default_factory=list)  # images losing an object, in order

    @property
    def recall_ceiling(self) -> float:
        return 1.0 - self.lost / self.objects if self.objects else 1.0

    def to_dict(self, first: int = 5) -> dict:
        return {"S": self.S, "B": self.B, "objects": self.objects, "lost": self.lost, "beyond_b": self.beyond_b,
                "recall_ceiling": round(self.recall_ceiling, 4), "images_losing_objects": len(self.images),
                "first": [str(p) for p in self.images[:first]]}

    def text(self) -> str:
        return (f"recall ceiling {self.recall_ceiling:.2f}: {self.lost} of {plural(self.objects, 'object')} "
                f"{'shares' if self.lost == 1 else 'share'} a {self.S}x{self.S} grid cell with a larger one (a cell's "
                f"target holds one object); {self.beyond_b} {'is' if self.beyond_b == 1 else 'are'} beyond the "
                f"B={self.B} {'box' if self.B == 1 else 'boxes'} of their cell")


def grid_capacity(records: Iterable[AnnotatedImage], S: int, B: int, num_classes: int) -> GridCapacity:
    found = GridCapacity(S, B)
    for rec in records:
        k = len(rec.labels)
        if k == 0:
            continue
        scale = np.array([rec.width, rec.height, rec.width, rec.height], dtype=np.float32)
        boxes = box_convert(torch.from_numpy(rec.boxes / scale), "xyxy", "cxcywh")
        kept = int(encode_targets(boxes, torch.from_numpy(rec.labels), S, num_classes)[..., TARGET_OBJ].sum())
        cells = cell_indices(boxes[:, 1], S) * S + cell_indices(boxes[:, 0], S)
        per_cell = torch.bincount(cells, minlength=S * S)
        found.objects += k
        found.lost += k - kept
        found.beyond_b += int((per_cell - B).clamp(min=0).sum())
        if kept < k:
            found.images.append(rec.image)
    return found
