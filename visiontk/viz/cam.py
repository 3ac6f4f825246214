"""Grad-CAM (Selvaraju et al. 2017): where in the image a class's score comes from.

Written here rather than taken from `grad-cam` (pip): that package pulls
scikit-learn, scipy, ttach and tqdm for what is a dozen lines, and it wraps the
model in its own target classes; `torchcam` wants a layer name, while every
visiontk model already has the map we want, its backbone's last feature map.

The recipe: run the model with a hook on the backbone's output, take the gradient
of each image's target score with respect to the deepest feature map A, weight each
channel of A by its gradient averaged over the map, sum, ReLU, upsample to the
input and scale to [0, 1] per image.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def grad_cam(model: nn.Module, x: torch.Tensor,
             score: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(cams [N, H, W] in [0, 1] at the input's size, the model's outputs).

    `model` has a `backbone` whose forward returns its feature maps (the last one is
    used); `score(outputs)` gives one scalar per image ([N]), whose gradient the map
    explains. Images do not mix (the model is in eval mode), so one backward of the
    sum gives every image its own gradient.
    """
    captured: list[torch.Tensor] = []

    def keep(module, args, output):
        captured.append(output[-1] if isinstance(output, (list, tuple)) else output)

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
