"""Reading images the same way everywhere: EXIF-upright, 8-bit, RGB or grey.

Every failure becomes a `DataError` whose message names the file and the
problem, so callers can either skip the image with a warning or stop.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visiontk.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}

# PIL refuses images above ~89 MP as possible decompression bombs; real photos
# and scans can be larger, so allow up to 200 MP and refuse beyond that.
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _to_8bit(img: Image.Image) -> Image.Image:
    # 16-bit and 32-bit greyscale PNG/TIFF: scale the full range to 8 bits
    # instead of letting PIL clip everything above 255 to white.
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        return Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return img


def open_image(path: str | Path, mode: str = "RGB", draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Open, decode and orient an image; `mode` is 'RGB' or 'L'.

    `draft_size` (w, h) lets the JPEG decoder scale down by 2, 4 or 8 while
    decoding when the image is much larger than needed.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                full_size = img.size
                if draft_size is not None and img.format == "JPEG":
                    img.draft("RGB" if mode == "RGB" else "L", draft_size)
                img.load()
                decoded = img.size
                img = ImageOps.exif_transpose(img)
                if img.size != decoded:  # rotated by 90 degrees: the full size turns too
                    full_size = full_size[::-1]
        img = _to_8bit(img)
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        if img.mode != mode:
            img = img.convert(mode)
        # The decoded image may be smaller than the file (draft); what a caller
        # reporting pixel coordinates needs is the file's displayed (w, h).
        img.info["original_size"] = full_size
        return img
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an image") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else 0
        what = "empty file (0 bytes)" if size == 0 else "not an image file PIL can decode"
        raise DataError(f"{path}: {what}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{path}: image too large (more than {MAX_PIXELS // 1_000_000} MP)") from None
    except (OSError, SyntaxError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise DataError(f"{path}: cannot decode image ({reason})") from None


def load_image(path: str | Path, mode: str = "RGB", draft_size: tuple[int, int] | None = None) -> np.ndarray:
    """HWC uint8 array (HW1 for 'L')."""
    arr = np.array(open_image(path, mode, draft_size))  # writable: torch.from_numpy needs it
    return arr[..., None] if arr.ndim == 2 else arr


def load_image_sized(path: str | Path, mode: str = "RGB", draft_size: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """`load_image` plus the (h, w) of the full-size image, which differs from the
    array's when the JPEG decoder scaled it down for `draft_size`."""
    img = open_image(path, mode, draft_size)
    w, h = img.info.get("original_size", img.size)
    arr = np.array(img)
    return (arr[..., None] if arr.ndim == 2 else arr), (int(h), int(w))
