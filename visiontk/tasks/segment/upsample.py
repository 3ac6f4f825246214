"""Learnable upsampling that starts as exact bilinear interpolation.

FCN's transposed convolutions must start as bilinear upsampling: a zero (or
random) initialisation never learns a usable upsampler (see
shared/notes/calibration.md: zero-initialised upsampler -> mIoU 0.22).

With kernel ``2*s``, stride ``s`` and padding ``s/2`` a transposed convolution
maps an ``H`` pixel input to exactly ``(H-1)*s - 2*(s/2) + 2*s = H*s`` pixels, and
the kernel below reproduces ``F.interpolate(mode="bilinear",
align_corners=False)`` away from the image border (at the border
``F.interpolate`` clamps to the edge pixel while the convolution sees zeros).
"""
from __future__ import annotations

import torch
from torch import nn


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weight ``[channels, channels, k, k]`` for a bilinear ``ConvTranspose2d``.

    Each channel is upsampled independently (identity across channels, zero
    cross-channel terms). For ``k = 2*s`` the 1-D taps are
    ``1 - |i - (s - 0.5)| / s``, i.e. the triangle filter of bilinear
    interpolation sampled at half-pixel offsets (``align_corners=False``).
    """
    if channels < 1 or kernel_size < 1:
        raise ValueError(f"channels and kernel_size must be >= 1, got {channels}, {kernel_size}")
    factor = (kernel_size + 1) // 2
    # Even kernels are centred between two taps, odd kernels on one tap.
    center = factor - 0.5 if kernel_size % 2 == 0 else factor - 1.0
    taps = 1.0 - (torch.arange(kernel_size, dtype=torch.float64) - center).abs() / factor
    kernel_2d = (taps[:, None] * taps[None, :]).to(torch.float32)
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    idx = torch.arange(channels)
    weight[idx, idx] = kernel_2d
    return weight


class BilinearConvTranspose2d(nn.ConvTranspose2d):
    """``ConvTranspose2d(c, c, 2s, stride=s, padding=s/2)`` initialised to bilinear ×s.

    Output size is exactly ``scale`` times the input size. ``scale`` must be
    even (2, 4, 8, 16, 32, ...): with an odd scale the padding ``s//2`` would
    give ``H*s + 1`` pixels.
    """

    def __init__(self, channels: int, scale: int) -> None:
        if scale < 2 or scale % 2 != 0:
            raise ValueError(f"scale must be an even integer >= 2, got {scale}")
        super().__init__(
            channels, channels, kernel_size=2 * scale, stride=scale, padding=scale // 2, bias=False
        )
        self.scale = scale
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.ConvTranspose2d.__init__ calls this before `scale` exists; the
        # explicit call at the end of our __init__ does the real initialisation.
        if not hasattr(self, "scale"):
            return super().reset_parameters()
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(self.in_channels, self.kernel_size[0]))
