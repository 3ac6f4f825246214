"""What `segment predict` writes per image: an index mask PNG and, optionally, a colour overlay.

Masks are 8-bit greyscale PNGs whose pixel values are class indices (or the
data set's own class ids, mapped in ``SegmentTask.postprocess``), at the
image's original size: every tool (PIL, OpenCV, scikit-image) reads the same
numbers back, which is not true of palette PNGs (OpenCV returns the colours).
The overlay is for people: a JPEG of the image with every class but index 0
(background by convention) tinted in its colour.

Files are named after the image (``<stem>.png``, ``<stem>_overlay.jpg``) and
never replace an existing file: a name already on disk (an input image in the
output folder, a mask from an earlier run) or already given in this run
(``a/x.jpg`` and ``b/x.jpg``) gets a ``-2``, ``-3``... suffix (OutputFolder
with keep_existing). The JSON record of each image says which files are its own.
"""
from __future__ import annotations


import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from visiontk.errors import UserError, writing
from visiontk.outputs.output_folder import OutputFolder
from visiontk.outputs.records import RecordWriter

from .common import label_map

OVERLAY_ALPHA = 0.5


# OpenCV's Python binding takes at most 128 channels (CV_CN_MAX of the array
# conversion); wider logit maps are resized in slices of this many.
OPENCV_MAX_CHANNELS = 128


def full_size_labels(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` class indices at ``size`` from ``[C, h, w]`` logits: uint8 (an
    8-bit PNG) up to 256 classes, uint16 (a 16-bit PNG) beyond.

    The logits (not the labels) are upsampled bilinearly (half-pixel centres,
    as F.interpolate with align_corners=False), which gives smooth boundaries.
    On the CPU OpenCV does it on the HWC array: 0.4 ms against torch's 2.0 ms
    for 4x128x128 -> 480x640, and the class maximum over the innermost axis
    is then cheaper too (benchmarks/README.md); results agree with torch's to
    ~1e-5 in the logits. Elsewhere (CUDA), torch does it where the logits are.
    """
    h, w = size
    logits = logits.float()
    dtype = np.uint8 if logits.shape[0] <= 256 else np.uint16
    if tuple(logits.shape[-2:]) == (h, w):
        return label_map(logits, 0).cpu().numpy().astype(dtype)
    if logits.device.type == "cpu":
        return _opencv_labels(logits, (h, w)).astype(dtype)
    up = F.interpolate(logits[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return label_map(up, 0).cpu().numpy().astype(dtype)


def _opencv_labels(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """The argmax of the bilinearly upsampled ``[C, h, w]`` CPU logits, by OpenCV.

    Bilinear resizing treats every channel on its own, so more than 128 classes
    (130 in a panoptic set) are resized in slices of at most 128 channels and
    the running maximum kept across slices: the labels of one resize of all
    channels, with one slice in memory at a time, and faster than torch's
    resize (130 x 60 x 80 -> 480 x 640 on one thread: 92 ms against 322 ms).
    A later slice wins only when strictly greater: ties keep the first class,
    as argmax does.
    """
    h, w = size
    hwc = logits.permute(1, 2, 0).numpy()
    best_value = best_index = None
    for start in range(0, hwc.shape[2], OPENCV_MAX_CHANNELS):
        part = np.ascontiguousarray(hwc[:, :, start:start + OPENCV_MAX_CHANNELS])
        # (reshaped: OpenCV drops a single channel)
        up = cv2.resize(part, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
        value, index = torch.from_numpy(up).max(-1)
        if best_value is None:
            best_value, best_index = value, index
        else:
            wins = value > best_value
            best_value = torch.where(wins, value, best_value)
            best_index = torch.where(wins, index + start, best_index)
    return best_index.numpy()


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


class MaskWriter(RecordWriter):
    """Writes each record's mask (and overlay) into the folder, then hands the
    record, with the files' paths in place of the arrays, to `then`.

    A record from `SegmentTask.postprocess` holds the mask array under "mask"
    and, for overlays, the decoded image under "image".
    """

    def __init__(self, folder: OutputFolder, overlay: bool, then: RecordWriter):
        self.folder, self.overlay, self.then = folder, overlay, then
        self.colours = class_colours(256)

    def __call__(self, record: dict) -> None:
        if "error" in record:
            self.then(record)
            return
        record = dict(record)
        image, mask = record.pop("image", None), record.pop("mask")
        written = self.save(record["path"], mask, image)
        self.then({"path": record.pop("path"), **written, **record})

    def save(self, image_path: str, mask: np.ndarray, image: np.ndarray | None = None) -> dict:
        """Write the files of one image; returns {'mask': path[, 'overlay': path]}."""
        paths = self.folder.paths_for(image_path, [".png", "_overlay.jpg"] if self.overlay else [".png"])
        # zlib level 3 rather than PIL's 6: on a noisy 640x480 mask (a model early
        # in training) 4.5 ms against 9.6, files 18% larger; on a clean one
        # (large regions) 1.2 ms against 1.6, 3.8 KB against 2.4.
        mask = np.ascontiguousarray(mask, dtype=np.uint8 if mask.dtype == np.uint8 else np.uint16)
        with writing(paths[0]):
            Image.fromarray(mask).save(paths[0], format="PNG", compress_level=3)
        written = {"mask": str(paths[0])}
        if self.overlay:
            if image is None:
                raise UserError("overlay needs the input image (Task.keeps_input_image)")
            if mask.size and int(mask.max()) >= len(self.colours):  # more than 256 classes
                self.colours = class_colours(int(mask.max()) + 1)
            with writing(paths[1]):
                Image.fromarray(overlay(image, mask, self.colours)).save(paths[1], format="JPEG", quality=90)
            written["overlay"] = str(paths[1])
        return written

    def close(self) -> None:
        self.then.close()

    def abort(self) -> None:
        self.then.abort()
