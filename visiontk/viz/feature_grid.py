"""Activation maps of one layer as one image: a grid of channels, each scaled to
its own range (as course slides show them), in grey levels."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GridLayout:
    channels: int
    rows: int
    cols: int
    tile: tuple[int, int]  # (h, w) in pixels, after scaling
    scale: int             # each activation is a scale x scale block
    gap: int               # pixels between tiles

    def origin(self, channel: int) -> tuple[int, int]:
        """Top-left pixel (y, x) of a channel's tile; channels run row by row."""
        r, c = divmod(channel, self.cols)
        return r * (self.tile[0] + self.gap), c * (self.tile[1] + self.gap)

    def to_dict(self) -> dict:
        return {"channels": self.channels, "grid": [self.rows, self.cols], "tile": list(self.tile),
                "scale": self.scale, "gap": self.gap}


def normalise_channels(act: np.ndarray) -> np.ndarray:
    """(C, H, W) floats -> uint8, each channel min..max -> 0..255; a constant channel is 0."""
    act = act.astype(np.float64)
    lo = act.min(axis=(1, 2), keepdims=True)
    span = act.max(axis=(1, 2), keepdims=True) - lo
    scaled = np.divide(act - lo, span, out=np.zeros_like(act), where=span > 0)
    return np.rint(scaled * 255).astype(np.uint8)


def tile_channels(act: np.ndarray, min_tile: int = 48, gap: int = 2) -> tuple[np.ndarray, GridLayout]:
    """(C, H, W) activations -> (grey uint8 image, layout). Small maps are enlarged by
    an integer factor (nearest: one activation stays one visible block) to at least
    `min_tile` pixels; the grid is as square as the channel count allows."""
    c, h, w = act.shape
    scale = max(1, math.ceil(min_tile / max(h, w)))
    cols = math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    layout = GridLayout(c, rows, cols, (h * scale, w * scale), scale, gap)
    tiles = normalise_channels(act).repeat(scale, axis=1).repeat(scale, axis=2)
    canvas = np.full((rows * (h * scale + gap) - gap, cols * (w * scale + gap) - gap), 255, dtype=np.uint8)
    for i in range(c):
        y, x = layout.origin(i)
        canvas[y:y + h * scale, x:x + w * scale] = tiles[i]
    return canvas, layout
