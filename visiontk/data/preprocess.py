"""The one way a file becomes the model's input: decode, resize, normalise.

Training, evaluation, `predict`, `transfer embed` and `export` all go through
a `Preprocess`, which travels in every checkpoint (key `preprocess`), so that
what `eval` measures is what `predict` does:

    array, (orig_h, orig_w) = pre.decode(path)   # uint8 HWC, upright, 1 or 3 channels
    # training only: albumentations augmentations on `array` here
    array = pre.finish(array)                     # uint8 HWC at pre.size
    x = pre.normalize(array)                      # float CHW, one image on the CPU
    x = pre.normalize_batch(uint8_nhwc_on_device) # float NCHW, the predictor's batches

`normalize` and `normalize_batch` compute the same float32 multiply-add
(`x * 1/(255 std) - mean/std`, constants rounded once from float64), so they
agree exactly on the CPU and to ~1e-6 elsewhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import torch

from visiontk.console import plural
from visiontk.data.images import load_image_sized
from visiontk.data.sources import IMAGES
from visiontk.errors import UserError

# How `finish` shrinks or enlarges a decoded image to the model's input size.
#   bilinear:      OpenCV bilinear (half-pixel centres), whatever the factor.
#   area_from_2x:  OpenCV area averaging when shrinking by 2x or more (where
#                  bilinear reads 4 source pixels per output pixel and
#                  aliases), bilinear below (predict's rule until 2026-12).
RESIZE_RULES = ("bilinear", "area_from_2x")
# The same in words, for the metadata of exported models (runtimes without visiontk).
RESIZE_RULE_TEXT = {
    "bilinear": "OpenCV cv2.resize INTER_LINEAR (half-pixel centres), whatever the factor",
    "area_from_2x": "OpenCV cv2.resize INTER_AREA when shrinking by 2x or more (either side), else INTER_LINEAR",
}

# Bilinear with draft decoding, by measurement (benchmarks/resize_bench.py and
# data_bench.py; benchmarks/README.md, "Resize rule"). On the 398 hymenoptera
# photos (384 shrink by 2x or more to 224, 46 are draft-decoded):
#   ImageNet lite0 zero-shot ant/bee, 224 px, correct (NLL): bilinear+draft 385
#     (0.0771), bilinear 384 (0.0781), area_from_2x+draft 384 (0.0805), area 384 (0.0813);
#   lite0 linear probe, 3 epochs x 3 seeds, val top-1: bilinear+draft 0.946,
#     bilinear 0.943, area_from_2x+draft 0.935, area_from_2x 0.933 (sd 0.004-0.007);
#   raccoon (lite0 YOLO head, 5 epochs x 3 seeds), val mAP@.5: bilinear+draft 0.722,
#     area_from_2x+draft 0.699, bilinear 0.683, area_from_2x 0.665 (sd 0.03-0.07).
# Speed per worker (640x480 -> 224 / 64, 12 MP -> 224): bilinear+draft 152 / 295 /
# 13.3 img/s, area_from_2x+draft 148 / 291 / 13.1, bilinear 113 / 205 / 2.8,
# area_from_2x 88 / 134 / 2.3 (a loaded machine: compare within a column).
# Why bilinear does not lose: draft decoding already shrinks large JPEGs in the
# DCT domain (an antialiased reduction) to within 2x of the input, and the
# augmentations that resize (RandomResizedCrop, Affine) resample bilinearly, so
# evaluation pixels look like training pixels. On membrane (512 -> 256 PNGs)
# the two rules give identical pixels (exactly 2x).
RESIZE_DEFAULT = "bilinear"
# JPEGs much larger than the input are decoded by libjpeg at 1/2, 1/4 or 1/8
# scale (PIL's draft), never below the input size: a 12 MP photo to 224 px
# decodes ~5x faster and takes 1/16-1/64 of the memory. Augmentations with sizes
# in pixels of the file (e.g. a fixed-size crop before any resize) see the smaller
# array: set data.jpeg_draft false for those.
DRAFT_DEFAULT = True


def _per_channel(values: Sequence[float], channels: int, key: str) -> tuple[float, ...]:
    """`channels` values: the first ones of a longer list (ImageNet's red for a
    grey model), or a single value repeated."""
    values = [float(v) for v in values]
    if len(values) >= channels:
        return tuple(values[:channels])
    if len(values) == 1:
        return tuple(values * channels)
    raise UserError(f"preprocess: '{key}' has {plural(len(values), 'value')} for {plural(channels, 'channel')}")


@dataclass(frozen=True)
class Preprocess:
    """size: (h, w) of the model input; None keeps each image at its own size
    (tiled segmentation), and then nothing is draft-decoded or resized.
    channels: 3 (RGB) or 1 (grey: PIL's 'L', luma of colour files).
    mean, std: per channel, on the 0-1 scale.
    resize: one of RESIZE_RULES. jpeg_draft: reduced-scale JPEG decoding.

    What `decode` does to unusual files (data/images.py `open_image`): EXIF
    orientation applied; 16- and 32-bit grey scaled to 8 bits (not clipped);
    alpha dropped (RGBA, LA, transparent palettes); palette, CMYK and grey
    converted to the model's channels.
    """

    size: tuple[int, int] | None
    channels: int = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    resize: str = RESIZE_DEFAULT
    jpeg_draft: bool = DRAFT_DEFAULT
    # (scale, bias) float32 tensors per device: computed once, never compared or saved.
    _constants: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.size is not None:
            h, w = (int(v) for v in self.size)
            if h < 1 or w < 1:
                raise UserError(f"preprocess: size must be positive (h, w), got {self.size!r}")
            object.__setattr__(self, "size", (h, w))
        if self.channels not in (1, 3):
            raise UserError(f"preprocess: channels must be 1 or 3, got {self.channels!r}")
        if self.resize not in RESIZE_RULES:
            raise UserError(f"preprocess: resize must be one of {', '.join(RESIZE_RULES)}, got {self.resize!r}")
        mean = _per_channel(self.mean, self.channels, "mean")
        std = _per_channel(self.std, self.channels, "std")
        if not all(math.isfinite(s) and s > 0 for s in std) or not all(math.isfinite(m) for m in mean):
            raise UserError(f"preprocess: std must be positive and mean finite, got mean {mean}, std {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "jpeg_draft", bool(self.jpeg_draft))

    # -- plain data, for checkpoints and export metadata ----------------------
    def to_dict(self) -> dict:
        return {"size": None if self.size is None else list(self.size), "channels": self.channels,
                "mean": list(self.mean), "std": list(self.std), "resize": self.resize, "jpeg_draft": self.jpeg_draft}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preprocess":
        from visiontk.data.modality import IMAGE, preprocess_class, preprocess_kind

        kind = preprocess_kind(d)
        if kind != IMAGE:  # a signal's or text's (data/modality.py): their own class reads it
            return preprocess_class(kind).from_dict(d)
        d = {k: v for k, v in d.items() if k != "kind"}
        known = {"size", "channels", "mean", "std", "resize", "jpeg_draft"}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"preprocess: unknown keys {', '.join(sorted(unknown))}")
        try:
            size = d.get("size")
            return cls(size=None if size is None else tuple(size), channels=int(d.get("channels", 3)),
                       mean=tuple(d["mean"]), std=tuple(d["std"]), resize=d.get("resize", RESIZE_DEFAULT),
                       jpeg_draft=d.get("jpeg_draft", DRAFT_DEFAULT))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"preprocess: malformed entry {dict(d)!r} ({e.__class__.__name__}: {e})") from None

    @classmethod
    def from_checkpoint(cls, meta: Mapping[str, Any]) -> "Preprocess":
        """The checkpoint's own `preprocess`; checkpoints written before it existed
        are rebuilt from their input_size / mean / std / in_channels with today's
        resize rule and draft policy (bilinear, as classify and detect trained)."""
        if meta.get("preprocess") is not None:
            return cls.from_dict(meta["preprocess"])
        return cls(size=tuple(meta["input_size"]), channels=int(meta.get("in_channels", 3)),
                   mean=tuple(meta["mean"]), std=tuple(meta["std"]))

    def with_size(self, size: tuple[int, int] | None) -> "Preprocess":
        return self if size == self.size else replace(self, size=None if size is None else tuple(size))

    @property
    def mode(self) -> str:
        """PIL mode of the decoded images."""
        return "L" if self.channels == 1 else "RGB"

    # -- the modality interface (data/modality.py) ---------------------------------
    kind = "image"
    # What SOURCE arguments hold: image files, one path per stdin line.
    sources = IMAGES

    def item_meta(self, item) -> dict:
        """The fields that name an input in its prediction record."""
        return {"path": str(item)}

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """(C, H, W) of one model input; None when each image keeps its own size."""
        return None if self.size is None else (self.channels, *self.size)

    def example(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """A random batch of normalised inputs (export traces and checks with it)."""
        return torch.randn(n, *self.input_shape, generator=generator)

    def export_input(self) -> dict:
        """The description of the input in an export's metadata (all but its shape)."""
        h, w = self.size
        return {
            "dtype": "float32",
            "layout": "NCHW",
            "channels": "RGB" if self.channels == 3 else "grey",
            "resize": [h, w],
            # How `predict` (and eval, and training after its augmentations) resizes:
            # users of the file get the model's accuracy only with the same pixels.
            "interpolation": RESIZE_RULE_TEXT[self.resize],
            "jpeg_draft": self.jpeg_draft,
            # What `predict` does: pixels / 255, then per channel (x - mean) / std.
            "scale": 1.0 / 255.0,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def backbone_inputs(self) -> dict:
        """Backbone builder arguments that come from the data (a text vocabulary); none for images."""
        return {}

    # -- file -> uint8 array ----------------------------------------------------
    def decode(self, path: str | Path) -> tuple[np.ndarray, tuple[int, int]]:
        """(uint8 HWC array with `channels` channels, (h, w) of the file as displayed).

        The array is smaller than (h, w) when the JPEG was draft-decoded:
        annotations in the file's pixel frame must be scaled to the array's.
        Raises DataError naming the file.
        """
        return load_image_sized(path, self.mode, draft_size=self.draft_size)

    @property
    def draft_size(self) -> tuple[int, int] | None:
        """The (w, h) JPEGs may be draft-decoded down to (PIL's order), or None."""
        if self.jpeg_draft and self.size is not None:
            return (self.size[1], self.size[0])
        return None

    def interpolation(self, from_hw: tuple[int, int]) -> int:
        """The OpenCV interpolation that `finish` uses for an image of `from_hw`."""
        if self.resize == "area_from_2x" and self.size is not None:
            if max(from_hw[0] / self.size[0], from_hw[1] / self.size[1]) >= 2:
                return cv2.INTER_AREA
        return cv2.INTER_LINEAR

    def finish(self, image: np.ndarray) -> np.ndarray:
        """uint8 HWC at `size` (unchanged when `size` is None or already right)."""
        if image.ndim == 2:
            image = image[..., None]
        if self.size is None or image.shape[:2] == self.size:
            return image
        h, w = self.size
        out = cv2.resize(image, (w, h), interpolation=self.interpolation(image.shape[:2]))
        return out[..., None] if out.ndim == 2 else out  # OpenCV drops a single channel

    # -- uint8 -> normalised float -------------------------------------------------
    def _scale_bias(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = str(device)
        if key not in self._constants:
            m = torch.tensor(self.mean, dtype=torch.float64)
            s = torch.tensor(self.std, dtype=torch.float64)
            # (x / 255 - mean) / std as one multiply-add, computed in float64, rounded once.
            scale, bias = (1.0 / (255.0 * s)).float(), (-m / s).float()
            self._constants[key] = (scale.view(-1, 1, 1).to(device), bias.view(-1, 1, 1).to(device))
        return self._constants[key]

    def normalize(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 HWC (array or tensor) -> float32 CHW, normalised."""
        t = torch.as_tensor(np.ascontiguousarray(image) if isinstance(image, np.ndarray) else image)
        if t.ndim == 2:
            t = t[..., None]
        self._check_channels(t.shape[-1])
        scale, bias = self._scale_bias(t.device)
        return t.permute(2, 0, 1).float().mul_(scale).add_(bias)

    def normalize_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC (on any device) -> float32 NCHW, normalised in place of the
        float copy; the NCHW view of NHWC memory is channels_last, as the model
        wants it on the CPU and CUDA."""
        self._check_channels(batch.shape[-1])
        n, h, w, c = batch.shape
        scale, bias = self._pixel_scale_bias(batch.device, h * w)
        # On the flat NHWC memory, with the constants repeated for every pixel: the
        # same products as per-channel constants on the NCHW view, 4x faster on the
        # CPU (there the innermost loop would run over the 3 channels alone).
        x = batch.reshape(n, h * w * c).float().mul_(scale).add_(bias)
        return x.view(n, h, w, c).permute(0, 3, 1, 2)

    def _pixel_scale_bias(self, device: torch.device, pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-channel constants repeated `pixels` times, as HWC memory holds them (kept for one size)."""
        key = ("pixels", str(device))
        found = self._constants.get(key)
        if found is None or found[0] != pixels:
            scale, bias = self._scale_bias(device)
            found = (pixels, scale.flatten().repeat(pixels), bias.flatten().repeat(pixels))
            self._constants[key] = found
        return found[1], found[2]

    def __call__(self, path: str | Path) -> torch.Tensor:
        """decode -> finish -> normalize: one file as the model sees it."""
        return self.normalize(self.finish(self.decode(path)[0]))

    def _check_channels(self, c: int) -> None:
        if c != self.channels:
            raise ValueError(f"preprocess: image has {c} channels, expected {self.channels}")


def resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Class-index mask to (h, w) by nearest neighbour: labels never blend."""
    if tuple(mask.shape[:2]) == tuple(hw):
        return mask
    return cv2.resize(mask, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)
