"""Grad-CAM (Selvaraju et al. 2017): where in the image a class's score comes from.

Written here rather than taken from `grad-cam` (pip): that package pulls
scikit-learn, scipy, ttach and tqdm for what is a dozen lines, and it wraps the
model in its own target classes; `torchcam` wants a layer name, while every
visiontk model already has the map we want, its backbone's last feature map.

The recipe: run the model with a hook on the backbone's output, take the gradient
of each image's target score with respect to a feature map A, weight each channel
of A by its gradient averaged over the map, sum, ReLU, upsample to the input and
scale to [0, 1] per image.

Which map: the deepest of the backbone's maps that is at least MIN_SIDE x MIN_SIDE
at the input size (the last one for the usual 224 px ResNet, 7 x 7). A 2 x 2 map
can only name a quadrant, and its cells' receptive fields cover the whole image:
on the shapes demo classifier (tinycnn, 64 px, maps 32..2) Grad-CAM on the last,
2 x 2 map put its maximum in the object's quadrant for 3 of 12 test images (chance
level), on the 4 x 4 map before it for 11 of 12, on the 8 x 8 one for 10.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MIN_SIDE = 4


def explained_map(features: list[torch.Tensor]) -> int:
    """Index of the feature map Grad-CAM explains: the deepest at least MIN_SIDE on each side
    (the first, largest, when none is)."""
    fits = [i for i, f in enumerate(features) if min(f.shape[-2:]) >= MIN_SIDE]
    return fits[-1] if fits else 0


def grad_cam(model: nn.Module, x: torch.Tensor,
             score: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(cams [N, H, W] in [0, 1] at the input's size, the model's outputs).

    `model` has a `backbone` whose forward returns its feature maps (`explained_map`
    picks one); `score(outputs)` gives one scalar per image ([N]), whose gradient the map
    explains. Images do not mix (the model is in eval mode), so one backward of the
    sum gives every image its own gradient.
    """
    captured: list[torch.Tensor] = []

    def keep(module, args, output):
        maps = list(output) if isinstance(output, (list, tuple)) else [output]
        captured.append(maps[explained_map(maps)])

    handle = model.backbone.register_forward_hook(keep)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            # A fresh leaf that requires grad: the graph exists even with frozen weights
            # (and a clone made here is a normal tensor, not an inference-mode one).
            inputs = x.detach().clone().float().requires_grad_(True)
            outputs = model(inputs)
            features = captured[-1]
            (grads,) = torch.autograd.grad(score(outputs.float()).sum(), features)
            weights = grads.float().mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * features.float()).sum(1, keepdim=True))
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            cam = cam / cam.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    finally:
        handle.remove()
    return cam.detach(), outputs.detach()


def cam_overlay(pixels: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The map as a JET heat map blended over the image (uint8 HWC or HW; same size as `cam`)."""
    heat = cv2.applyColorMap(np.clip(cam * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    image = pixels if pixels.ndim == 3 and pixels.shape[2] == 3 else np.repeat(pixels.reshape(*cam.shape, 1), 3, 2)
    return np.clip(image * (1 - alpha) + heat * alpha, 0, 255).round().astype(np.uint8)
