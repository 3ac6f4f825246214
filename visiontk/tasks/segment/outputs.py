"""What `segment predict` writes per image: an index mask PNG and, optionally, a colour overlay.

Masks are 8-bit greyscale PNGs whose pixel values are class indices, at the
image's original size: every tool (PIL, OpenCV, scikit-image) reads the same
numbers back, which is not true of palette PNGs (OpenCV returns the colours).
The overlay is for people: a JPEG of the image with every class but index 0
(background by convention) tinted in its colour.

Files are named after the image (``<stem>.png``, ``<stem>_overlay.jpg``) and
never replace an existing file: a name already on disk (an input image in the
output folder, a mask from an earlier run) or already given in this run
(``a/x.jpg`` and ``b/x.jpg``) gets a ``-2``, ``-3``... suffix. The JSON record
of each image says which files are its own.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from visiontk.errors import UserError

OVERLAY_ALPHA = 0.5


def class_colours(n: int) -> np.ndarray:
    """``[n, 3]`` uint8 colours, the Pascal VOC colour map (class 0 black).

    Bits of the class index are spread over the high bits of R, G and B, so
    neighbouring indices get clearly different colours.
    """
    colours = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        c, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours[index] = (r, g, b)
    return colours


def overlay(image: np.ndarray, mask: np.ndarray, colours: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """RGB uint8 image with every pixel of class >= 1 blended with its class colour."""
    h, w = mask.shape
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[:2] != (h, w):  # the predictor may have decoded a JPEG at reduced size
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    out = image.astype(np.float32)
    tinted = mask > 0
    out[tinted] = (1 - alpha) * out[tinted] + alpha * colours[mask[tinted]].astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class MaskSaver:
    """Writes masks (and overlays) into one folder under collision-free names."""

    def __init__(self, out_dir: str | Path, overlay: bool = False):
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise UserError(f"{self.out_dir}: --out-dir exists and is not a folder")
        self.overlay = overlay
        self.taken: set[str] = set()
        self.colours = class_colours(256)

    def _names(self, image_path: str) -> tuple[Path, Path]:
        stem = Path(image_path).stem or "image"
        n = 1
        while True:
            base = stem if n == 1 else f"{stem}-{n}"
            mask, over = self.out_dir / f"{base}.png", self.out_dir / f"{base}_overlay.jpg"
            if base not in self.taken and not mask.exists() and not (self.overlay and over.exists()):
                self.taken.add(base)
                return mask, over
            n += 1

    def save(self, image_path: str, mask: np.ndarray, image: np.ndarray | None = None) -> dict:
        """Write the files of one image; returns {'mask': path[, 'overlay': path]}."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        mask_path, overlay_path = self._names(image_path)
        Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8)).save(mask_path, format="PNG")
        written = {"mask": str(mask_path)}
        if self.overlay:
            if image is None:
                raise UserError("overlay needs the input image (predictor option keep_image)")
            Image.fromarray(overlay(image, mask, self.colours)).save(overlay_path, format="JPEG", quality=90)
            written["overlay"] = str(overlay_path)
        return written
