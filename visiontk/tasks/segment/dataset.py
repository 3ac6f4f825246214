"""Map-style dataset: image + class-index mask, augmented together, at the model's input size."""
from __future__ import annotations

from typing import Literal, Sequence

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from visiontk.console import warn
from visiontk.data.preprocess import Preprocess, resize_mask
from visiontk.errors import DataError, UserError

from .readers import (
    IGNORE_INDEX,
    Policy,
    SegmentationRecord,
    check_policy,
    load_mask,
    mask_problem,
)

ScoredAt = Literal["input_size", "image_size"]
SCORED_AT = ("input_size", "image_size")


class SegmentationDataset(Dataset):
    """Returns ``(image float32 [C, h, w] normalised, mask int64)``.

    Per item: `preprocess` decodes the image (EXIF-upright, its channels,
    JPEGs possibly draft-decoded smaller than the file) and the mask is read
    at the file's full size with ``load_mask`` and checked against it. For
    training, the mask is first brought to the decoded image's size (nearest:
    a plain subsampling when the JPEG was draft-decoded), then ``transform``
    (an ``A.Compose`` of uint8 -> uint8 augmentations; no Normalize /
    ToTensor, the dataset does those) moves image and mask together (nearest
    for masks, so labels never blend). Finally `preprocess` resizes and
    normalises the image exactly as ``predict`` does, and the mask is resized
    by nearest neighbour to the input size (``mask_at="input_size"``: training,
    per-epoch validation, ``eval --at input-size``) or kept at the image's own
    size (``"image_size"``: ``eval``'s default, scored against the logits
    upsampled as ``predict`` writes its masks; such masks differ in size, see
    ``collate_segmentation``). Geometric transforms pad masks with
    ``fill_mask`` (0 by default): set ``fill_mask=255`` in the recipe so
    padding is ignored rather than learnt as background.

    A mask that turns out bad at load time (wrong size, class values >=
    num_classes other than 255) raises ``DataError`` with policy 'error'; with
    'skip' it is warned about once and replaced by an all-ignore mask, so the
    sample adds nothing to the loss (a map-style dataset cannot drop items).
    """

    def __init__(
        self,
        records: Sequence[SegmentationRecord],
        num_classes: int,
        preprocess: Preprocess,
        transform: A.Compose | None = None,
        policy: Policy = "error",
        mask_at: ScoredAt = "input_size",
    ) -> None:
        check_policy(policy)
        if mask_at not in SCORED_AT:
            raise UserError(f"mask_at must be one of {', '.join(SCORED_AT)}, got {mask_at!r}")
        if transform is not None and mask_at != "input_size":
            raise UserError("masks at the image's own size are for evaluation, without augmentations")
        self.records = list(records)
        self.num_classes = num_classes
        self.preprocess = preprocess
        self.transform = transform
        self.policy = policy
        # Where evaluation compares predictions with the truth (read by SegmentTask.evaluate).
        self.mask_at = "input_size" if preprocess.size is None else mask_at
        self._warned: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 [h, w, C] as decoded, mask uint8 [H, W] at the file's size)``
        after the policy checks."""
        record = self.records[index]
        image, full_hw = self.preprocess.decode(record.image)
        mask = load_mask(record)
        problem = mask_problem(record, mask, full_hw, self.num_classes)
        if problem is not None:
            if self.policy == "error":
                raise DataError(problem)
            if index not in self._warned:
                self._warned.add(index)
                warn(f"{problem}; its pixels are ignored")
            mask = np.full(full_hw, IGNORE_INDEX, dtype=np.uint8)
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            image, mask = self.load(index)
        except DataError as e:
            # An image that cannot be decoded (the set's reading checks headers only):
            # dropped by collate, as in detection and classification, unless the policy is 'error'.
            if self.policy == "error":
                raise
            warn(f"{e} (skipped)")
            return None
        if self.transform is not None:
            out = self.transform(image=image, mask=resize_mask(mask, image.shape[:2]))
            image, mask = out["image"], out["mask"]
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
                raise UserError(
                    "segmentation transform must return uint8 numpy images; "
                    "remove Normalize/ToTensorV2 (the dataset normalises)"
                )
        image = self.preprocess.finish(image)
        if self.mask_at == "input_size":
            mask = resize_mask(mask, image.shape[:2])
        image_t = self.preprocess.normalize(image)
        mask_t = torch.from_numpy(np.ascontiguousarray(mask)).long()
        return image_t, mask_t


def collate_segmentation(batch: list) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor]] | None:
    """Stack the images; the masks too when they share a size, else a list (masks
    at each image's own size). Skipped samples (None) are left out."""
    kept = [b for b in batch if b is not None]
    if not kept:
        return None
    images = torch.stack([b[0] for b in kept])
    masks = [b[1] for b in kept]
    if all(m.shape == masks[0].shape for m in masks):
        return images, torch.stack(masks)
    return images, masks
