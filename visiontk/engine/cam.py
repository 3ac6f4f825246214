"""`predict --cam`: a Grad-CAM map per image, added to each image's meta for the writers.

The predictor calls `add_cams` after its forward pass (which ran without
gradients); Grad-CAM needs one with gradients, so the batch runs once more here,
in fp32, outside autocast. The task says which score is explained
(`Task.cam_scores`: classify its top-1 class, segment a chosen class).
"""
from __future__ import annotations

import numpy as np
import torch

from visiontk.engine.decode_batches import stack_images
from visiontk.viz.cam import cam_overlay, grad_cam


def add_cams(model: torch.nn.Module, batch: list, preprocess, task, context, device: torch.device) -> None:
    """`batch`: (uint8 HWC pixels at the model's input size, meta) per image; sets meta["cam"] =
    {overlay: uint8 HWC, class: name, peak: [x, y] of the map's maximum in the original image's pixels}."""
    pixels = [p for p, _ in batch]
    x = preprocess.normalize_batch(stack_images(pixels).to(device))
    chosen: list[str] = []

    def score(outputs: torch.Tensor) -> torch.Tensor:
        scores, names = task.cam_scores(outputs, context)
        chosen.extend(names)
        return scores

    cams, _ = grad_cam(model, x, score)
    for (image, meta), cam, name in zip(batch, cams.cpu().numpy(), chosen):
        h, w = cam.shape
        y, x_ = np.unravel_index(int(cam.argmax()), cam.shape)
        oh, ow = meta["orig_size"]
        # An all-zero map (no positive evidence anywhere) has no peak.
        peak = [round((x_ + 0.5) * ow / w - 0.5, 1), round((y + 0.5) * oh / h - 0.5, 1)] if cam.max() > 0 else None
        meta["cam"] = {"overlay": cam_overlay(np.asarray(image), cam), "class": name, "peak": peak}
