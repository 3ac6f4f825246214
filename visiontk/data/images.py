"""Reading images the same way everywhere: EXIF-upright, 8-bit, RGB or grey.

Every failure becomes a `DataError` whose message names the file and the
problem, so callers can either skip the image with a warning or stop.
"""
from __future__ import annotations

import os
import struct
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from visiontk.console import warn
from visiontk.errors import DataError

from .regular_files import open_regular

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}

# PIL refuses images above ~89 MP as possible decompression bombs; real photos
# and scans can be larger, so allow up to 200 MP and refuse beyond that.
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# The pixel count alone let a 14000 x 14000 16-bit PNG (196 MP) through to a
# 0.4 GB decode plus its 8-bit copy: what is limited is the bytes decoding
# takes -- the file's samples at their depth and channels, plus the 8-bit image
# they are converted into -- at the budget 200 MP of 8-bit RGB always had.
MAX_DECODED_BYTES = 600_000_000
_SAMPLE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}
_ORIENTATION = 0x0112  # EXIF tag


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def decoded_bytes(img: Image.Image, mode: str) -> int:
    """What decoding `img` (opened, not loaded) into `mode` takes: its samples, plus the converted copy."""
    w, h = img.size
    sample = _SAMPLE_BYTES.get(img.mode, len(img.getbands()))
    converted = 0 if img.mode == mode else len(Image.new(mode, (1, 1)).getbands())
    return w * h * (sample + converted)


def _bit_depth(img: Image.Image) -> int:
    """Bits per sample of an opened (not yet loaded) file: 16-bit RGB PNGs open as mode
    'RGB' (PIL reduces them while decoding), so their raw mode says it."""
    if img.mode.startswith("I;16") or any(";16" in str(t[3]) for t in (img.tile or []) if len(t) > 3):
        return 16
    return 32 if img.mode in ("I", "F") else 8


def _png_exif_after_pixels(fp: BinaryIO) -> bytes | None:
    """The eXIf chunk of a PNG whose EXIF comes after its pixel data, found by
    hopping from chunk header to chunk header (nothing decompressed)."""
    start = fp.tell()
    try:
        fp.seek(8)
        while True:
            head = fp.read(8)
            if len(head) < 8:
                return None
            length, tag = struct.unpack(">I4s", head)
            if tag == b"eXIf":
                return fp.read(length)
            if tag == b"IEND":
                return None
            fp.seek(length + 4, os.SEEK_CUR)  # the chunk's data and its CRC
    finally:
        fp.seek(start)


def exif_orientation(img: Image.Image, fp: BinaryIO) -> int:
    """The EXIF orientation tag of an opened (not loaded) image, read without decoding a pixel.

    PIL's PNG `getexif` decodes the whole image to reach an eXIf chunk stored
    after the pixels: a 14000 x 14000 16-bit PNG took 0.4 GB before the
    decoded-size limit could refuse it. The chunk is found from the headers
    instead, and PIL's format-independent reader parses it.
    """
    if img.format != "PNG" or "exif" in img.info:
        return img.getexif().get(_ORIENTATION, 1)
    trailing = _png_exif_after_pixels(fp)
    if trailing is not None:
        img.info["exif"] = b"Exif\x00\x00" + trailing  # as PIL's own eXIf reader stores it
    return Image.Image.getexif(img).get(_ORIENTATION, 1)


def _to_8bit(img: Image.Image) -> Image.Image:
    # 16-bit and 32-bit greyscale PNG/TIFF: scale the full range to 8 bits
    # instead of letting PIL clip everything above 255 to white. In bands of
    # rows: a float64 copy of the whole image would be 4x the 16-bit one.
    if img.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
        return img
    arr = np.asarray(img)
    hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
    out = np.empty(arr.shape, np.uint8)
    for top in range(0, arr.shape[0], 512):
        band = arr[top:top + 512].astype(np.float64)
        out[top:top + 512] = np.clip(band / hi * 255.0 + 0.5, 0, 255)
    return Image.fromarray(out, "L")


# EXIF orientation -> the transpose that makes the image upright (what
# ImageOps.exif_transpose does, without parsing the EXIF block a second time).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = (5, 6, 7, 8)
# warnings.catch_warnings is process-wide, and images are decoded in threads:
# only the cheap part (header and EXIF parsing) runs under the filters, one
# thread at a time; the pixel decoding runs outside the lock.
_WARNINGS_LOCK = threading.Lock()


def _new_lock_after_fork() -> None:
    # A DataLoader worker forked while another thread held the lock would
    # otherwise wait for it forever.
    global _WARNINGS_LOCK
    _WARNINGS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


@contextmanager
def _open_and_orientation(path: Path) -> Iterator[tuple[Image.Image, int, int]]:
    """Open `path` lazily (header only) and read its EXIF orientation and bits per sample.

    PIL's warnings become one-line warnings naming the file, printed once the
    body (the decoding) succeeded: a corrupt EXIF block is ignored (the image
    is read as stored). PIL's decompression-bomb warning becomes an error
    (the MAX_PIXELS limit).
    """
    # Regular files only (regular_files.py): a FIFO named x.png is refused, not waited on.
    with open_regular(path) as fp:
        with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            bits = _bit_depth(img)
            try:
                orientation = exif_orientation(img, fp)  # no pixel decoded before the size limit
            except Exception as e:  # noqa: BLE001 - a broken EXIF block must not make the image unreadable
                caught.append(warnings.WarningMessage(f"unreadable EXIF data ignored ({e.__class__.__name__})", UserWarning, "", 0))
                orientation = 1
        with img:
            yield img, orientation if orientation in _TRANSPOSE else 1, bits
    for w in caught:
        warn(f"{path}: {' '.join(str(w.message).split())}")


def open_image(path: str | Path, mode: str = "RGB", draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Open, decode and orient an image; `mode` is 'RGB' or 'L'.

    `draft_size` (w, h) lets the JPEG decoder scale down by 2, 4 or 8 while
    decoding when the image is much larger than needed.
    """
    path = Path(path)
    try:
        with _open_and_orientation(path) as (opened, orientation, file_bits):
            full_size = opened.size
            # What the file holds, before any conversion (`visiontk data check` counts them).
            file_mode = opened.mode
            if draft_size is not None and opened.format == "JPEG":
                # The draft size is in the stored (not yet rotated) frame.
                if orientation in _SWAPS_SIDES:
                    draft_size = (draft_size[1], draft_size[0])
                opened.draft("RGB" if mode == "RGB" else "L", draft_size)
            # Before any pixel is decoded (after draft, which shrinks what a JPEG decodes to).
            if decoded_bytes(opened, mode) > MAX_DECODED_BYTES:
                w, h = opened.size
                raise DataError(f"{path}: image too large: {w} x {h} pixels of mode {opened.mode} take "
                                f"{decoded_bytes(opened, mode) / 1e6:.0f} MB to decode as {mode} "
                                f"(limit {MAX_DECODED_BYTES // 1_000_000} MB)")
            opened.load()
            img = opened
            if orientation in _TRANSPOSE:
                img = img.transpose(_TRANSPOSE[orientation])
                if orientation in _SWAPS_SIDES:  # rotated by 90 degrees: the full size turns too
                    full_size = full_size[::-1]
            img = _to_8bit(img)
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")
            if img.mode != mode:
                img = img.convert(mode)
            if img is opened:  # closing the file releases the opened image's pixels
                img = img.copy()
        # The decoded image may be smaller than the file (draft); what a caller
        # reporting pixel coordinates needs is the file's displayed (w, h).
        img.info["original_size"] = full_size
        img.info["file_mode"], img.info["file_bits"] = file_mode, file_bits
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
    except MemoryError:
        raise DataError(f"{path}: image too large to decode in the available memory") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
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
