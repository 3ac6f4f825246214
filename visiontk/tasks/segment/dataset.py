"""Map-style dataset: image + class-index mask, augmented together, fixed size."""
from __future__ import annotations

from typing import Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from visiontk.console import warn
from visiontk.errors import DataError, UserError

from .readers import (
    IGNORE_INDEX,
    Policy,
    SegmentationRecord,
    check_policy,
    load_image,
    load_mask,
    mask_problem,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


class SegmentationDataset(Dataset):
    """Returns ``(image float32 [3, H, W] normalised, mask int64 [H, W])``.

    Per item: the image is read with PIL (EXIF orientation applied, RGB) and
    the mask with ``load_mask``; ``transform`` (an ``A.Compose`` of uint8 →
    uint8 augmentations; no Normalize / ToTensor, the dataset does those) is
    applied to both at once — albumentations moves the mask with the image
    and resamples it with nearest neighbour, so labels never blend. Then both
    are resized to ``size`` (image: bilinear, area when shrinking; mask:
    nearest). Geometric transforms pad masks with ``fill_mask`` (0 by
    default): set ``fill_mask=255`` in the recipe so padding is ignored
    rather than learnt as background.

    A mask that turns out bad at load time (wrong size, class values >=
    num_classes other than 255) raises ``DataError`` with policy 'error'; with
    'skip' it is warned about once and replaced by an all-ignore mask, so the
    sample adds nothing to the loss (a map-style dataset cannot drop items).
    """

    def __init__(
        self,
        records: Sequence[SegmentationRecord],
        num_classes: int,
        size: int | Sequence[int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        transform: A.Compose | None = None,
        policy: Policy = "error",
    ) -> None:
        check_policy(policy)
        self.records = list(records)
        self.num_classes = num_classes
        self.size = _as_hw(size)
        self.mean = np.asarray(mean, dtype=np.float32) * 255.0
        self.std = np.asarray(std, dtype=np.float32) * 255.0
        self.transform = transform
        self.policy = policy
        self._warned: set[int] = set()
        self.resize = (
            None
            if self.size is None
            else A.Resize(
                *self.size,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                area_for_downscale="image",  # area avoids aliasing when shrinking
            )
        )

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(image uint8 [H, W, 3], mask uint8 [H, W])`` after the policy checks."""
        record = self.records[index]
        image = load_image(record.image)
        mask = load_mask(record)
        problem = mask_problem(record, mask, image.shape[:2], self.num_classes)
        if problem is not None:
            if self.policy == "error":
                raise DataError(problem)
            if index not in self._warned:
                self._warned.add(index)
                warn(f"{problem}; its pixels are ignored")
            mask = np.full(image.shape[:2], IGNORE_INDEX, dtype=np.uint8)
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
                raise UserError(
                    "segmentation transform must return uint8 numpy images; "
                    "remove Normalize/ToTensorV2 (the dataset normalises)"
                )
        if self.resize is not None and image.shape[:2] != self.size:
            out = self.resize(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        x = (image.astype(np.float32) - self.mean) / self.std
        image_t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
        mask_t = torch.from_numpy(np.ascontiguousarray(mask)).long()
        return image_t, mask_t
