"""Activated YOLO-v1 grid -> scored, class-aware-NMS'd boxes per image."""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_convert

from visiontk.tasks.detect.encode import decode_grid_boxes

# Most candidates (boxes above the score threshold) of a batch decoded with one
# NMS call; torchvision's own batched_nms switches from one call to one per
# class past this many boxes on the CPU.
ONE_NMS_MAX = 1000


def grid_to_boxes(pred: Tensor, B: int) -> tuple[Tensor, Tensor, Tensor]:
    """Every predictor of the grid as a candidate detection, without filtering.

    Returns ``boxes [N, S*S*B, 4]`` (normalised xyxy clipped to [0, 1]),
    ``scores [N, S*S*B]`` and ``labels [N, S*S*B]``.

    Score: the paper's class-specific confidence conf x P(class | object). Each
    box takes its best class. Since conf is one number per box and the class
    probabilities are shared by the B boxes of a cell, max_c(conf x p_c) =
    conf x max_c p_c: the best class of a box is its cell's argmax class. We
    keep one detection per box (not one per class above threshold), which is
    what YOLO-v1 inference does in practice and keeps the output small.
    """
    n, S, S2, D = pred.shape
    C = D - 5 * B
    if S != S2 or C < 1:
        raise ValueError(f"grid_to_boxes: expected [N, S, S, {B}*5 + C], got {tuple(pred.shape)}")
    raw = pred[..., : 5 * B].reshape(n, S, S, B, 5)
    cell = torch.cat([raw[..., 0:2], raw[..., 2:4].square()], dim=-1)  # head predicts sqrt(w), sqrt(h)
    boxes = decode_grid_boxes(cell, "xyxy", per_box=True).clamp(0.0, 1.0)
    best_p, best_c = pred[..., 5 * B :].max(dim=-1)  # [N, S, S]
    scores = raw[..., 4] * best_p.unsqueeze(-1)  # [N, S, S, B]
    labels = best_c.unsqueeze(-1).expand(n, S, S, B)
    return boxes.reshape(n, -1, 4), scores.reshape(n, -1), labels.reshape(n, -1)


def candidates(pred: Tensor, B: int, conf_threshold: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The predictors of the grid that score above the threshold, as `grid_to_boxes`
    gives them (the same numbers): ``image [K]`` (index in the batch), ``boxes [K, 4]``,
    ``scores [K]``, ``labels [K]``, image by image in grid order.

    Scores first, boxes only for the few that pass: with a trained model most
    of the S*S*B predictors score near zero.
    """
    n, S, S2, D = pred.shape
    C = D - 5 * B
    if S != S2 or C < 1:
        raise ValueError(f"candidates: expected [N, S, S, {B}*5 + C], got {tuple(pred.shape)}")
    raw = pred[..., : 5 * B].reshape(n, S, S, B, 5)
    best_p, best_c = pred[..., 5 * B :].max(dim=-1)  # [N, S, S]
    scores = raw[..., 4] * best_p.unsqueeze(-1)  # [N, S, S, B]
    image, row, col, b = (scores > conf_threshold).nonzero(as_tuple=True)
    cell = raw[image, row, col, b, :4]
    # decode_grid_boxes' arithmetic on the kept cells only: centre in cell units
    # plus the cell's column / row, over S; the head predicts sqrt(w), sqrt(h).
    centre = torch.stack([(cell[:, 0] + col.to(cell.dtype)) / S, (cell[:, 1] + row.to(cell.dtype)) / S,
                          cell[:, 2].square(), cell[:, 3].square()], dim=-1)
    boxes = box_convert(centre, "cxcywh", "xyxy").clamp(0.0, 1.0)
    return image, boxes, scores[image, row, col, b], best_c[image, row, col]


def decode_batch(
    pred: Tensor,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.5,
    max_det: int = 100,
    B: int = 2,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The detections of a whole batch, image after image: ``boxes [K, 4]``
    (normalised xyxy), ``scores [K]``, ``labels [K]`` and ``counts [N]`` (how many
    of the K belong to each image; each image's are sorted by decreasing score).

    The same detections as thresholding and NMS-ing each image on its own, in a
    few tensor operations per batch instead of a dozen per image: the score
    threshold first (most of the S*S*B candidates go there), then one
    `torchvision.ops.batched_nms` over the batch where each (image, class) pair
    is a category of its own, so boxes of different images or classes never
    suppress each other (past ONE_NMS_MAX candidates, one call per image). The
    boxes go to NMS in float64: its coordinate trick moves each category away by
    an offset (up to 2 x images x classes), which in float32 would round the
    coordinates (by up to 2.4e-4 at an offset of 4000) and in float64 leaves every
    float32 coordinate exact.
    """
    image, boxes, scores, labels = candidates(pred.detach(), B, conf_threshold)
    n = pred.shape[0]
    if scores.numel() <= ONE_NMS_MAX:
        num_classes = pred.shape[-1] - 5 * B
        keep = batched_nms(boxes.double(), scores.double(), image * num_classes + labels, iou_threshold)
        # batched_nms sorts by decreasing score over the whole batch; a stable sort by
        # image keeps that order within each image.
        keep = keep[torch.sort(image[keep], stable=True).indices]
    else:
        # NMS compares every pair of its boxes: past ONE_NMS_MAX (e.g. evaluation's
        # 0.001 threshold keeps nearly every box), one call per image costs less.
        sizes = torch.bincount(image, minlength=n).tolist()
        keep, start = [], 0
        for b, s, l, size in zip(boxes.split(sizes), scores.split(sizes), labels.split(sizes), sizes):
            keep.append(batched_nms(b.double(), s.double(), l, iou_threshold) + start)
            start += size
        keep = torch.cat(keep)
    image = image[keep]
    counts = torch.bincount(image, minlength=n)
    if keep.numel() and int(counts.max()) > max_det:
        # The max_det best of each image: rank within the image < max_det.
        starts = counts.cumsum(0) - counts
        rank = torch.arange(keep.numel(), device=keep.device) - starts[image]
        keep = keep[rank < max_det]
        counts = counts.clamp(max=max_det)
    return boxes[keep], scores[keep], labels[keep], counts


def decode_predictions(
    pred: Tensor,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.5,
    max_det: int = 100,
    B: int = 2,
) -> list[dict[str, Tensor]]:
    """Detections per image: ``{boxes [K, 4] normalised xyxy, scores [K], labels [K]}``.

    Keeps boxes with score > conf_threshold, applies class-aware NMS
    (boxes of different classes never suppress each other), then the `max_det`
    best, sorted by decreasing score (`decode_batch`, split image by image).
    `pred` is the activated head output; B is needed to split its last axis.
    """
    boxes, scores, labels, counts = decode_batch(pred, conf_threshold, iou_threshold, max_det, B)
    sizes = counts.tolist()
    return [{"boxes": b, "scores": s, "labels": l}
            for b, s, l in zip(boxes.split(sizes), scores.split(sizes), labels.split(sizes))]


def scale_to_pixels(boxes: Tensor, width: float, height: float) -> Tensor:
    """Normalised xyxy -> pixel xyxy of an image of the given original size.

    The dataset resizes plainly (no letterbox), so normalised coordinates are
    the same before and after the resize.
    """
    return boxes * boxes.new_tensor([width, height, width, height])
