"""Index masks: image/mask folder pairs -> AnnotatedSet, mask PNG decoding, value tables.

A mask holds one class index per pixel (uint8): 0 is usually background and
255 is ignore (counted in neither loss nor metrics). Masks stored with other
values (e.g. {0, 255} for a binary set) are read through a value table
(``data.options.mask_values``) instead of being rewritten. Masks whose values
are a data set's own sparse class ids (0, 7, 200) are read through its class
map (``data.classes: {id: name}`` or ``data.options.data_yaml``): ids become
contiguous indices, unlisted values are ignored.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
from PIL import Image
from pydantic import AfterValidator

from visiontk.console import warn
from visiontk.data.images import MAX_DECODED_BYTES, MAX_PIXELS, decoded_bytes
from visiontk.data.regular_files import NotRegularFile, file_present, open_regular
from visiontk.errors import DataError
from visiontk.recipe import Fraction, Section, register_format_options, rule_error

from .files import read_image_size
from .issues import BAD_MASK, MISSING_MASK, Issues, Policy, one_line
from .options import PathOption
from .paths import find_images
from .records import AnnotatedImage, AnnotatedSet, annotated

IGNORE_INDEX = 255
# PIL modes whose pixel values are class indices. 'P' is read as palette
# *indices* (VOC): converting it to RGB or 'L' would destroy the labels.
INDEX_MODES = ("L", "P")


def _stored_values(mapping: dict) -> dict:
    # A rule rather than dict[Byte, Byte]: the message names the offending pair.
    for raw, index in mapping.items():
        if not (_is_byte(raw) and _is_byte(index)):
            raise rule_error(f"maps stored values 0-255 to class indices 0-255 (255 = ignore), got {raw!r}: {index!r}",
                             show_value=False)
    return mapping


def _is_byte(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255


class MaskFolderOptions(Section):
    # Folders relative to data.root; {split} is replaced by data.train / data.val.
    images: PathOption = "{split}/images"
    masks: PathOption = "{split}/masks"
    # Mask of images/<stem>.<ext> is masks/<stem><mask_suffix>.png.
    mask_suffix: str = ""
    # Stored value -> class index, for masks that are not stored as class indices
    # (e.g. {0: 0, 255: 1} for binary masks saved as black/white). Values not
    # listed are bad annotations.
    mask_values: Optional[Annotated[dict, AfterValidator(_stored_values)]] = None
    # A data-set yaml whose `names: {id: name}` (Ultralytics style) says which
    # mask values are classes, gaps allowed (0, 7, 200); relative to data.root.
    # Same as data.classes given as an {id: name} map. Values not listed are
    # ignored (255), with one warning counting them.
    data_yaml: Optional[str] = None
    # > 0: hold out this fraction of the data.train folder (the last images in
    # sorted order) as the validation split, for sets shipped without one.
    val_fraction: Fraction = 0.0


register_format_options("masks", MaskFolderOptions)


def read_mask_folders(images_dir: Path, masks_dir: Path, mask_suffix: str = "", policy: Policy = "skip") -> AnnotatedSet:
    """Pair ``images_dir/<rel>/<stem>.<ext>`` with ``masks_dir/<rel>/<stem><mask_suffix>.png``.

    Subfolders are mirrored; the masks folder may live inside the images
    folder (its files are not taken for images). ``classes`` is None: the
    masks hold the class indices.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: not a directory")
    issues = Issues(images_dir, policy)
    by_key: dict[Path, Path] = {}
    for image in find_images(images_dir, exclude=masks_dir):
        key = image.relative_to(images_dir).with_suffix("")
        if key in by_key:
            # Not a bad annotation: two images share a mask name, and one of them must go.
            warn(f"{image}: another image with stem {key} exists ({by_key[key].name}); using that one")
            continue
        by_key[key] = image
    records = []
    for key, image in by_key.items():
        mask = masks_dir / key.parent / f"{key.name}{mask_suffix}.png"
        if not mask_present(image, mask, issues):
            continue
        record = mask_record(image, mask, key.as_posix(), issues)
        if record is not None:
            records.append(record)
    return AnnotatedSet(records, None, None, issues.finish())


def mask_present(image: Path, mask: Path, issues: Issues) -> bool:
    """Whether `image` has its mask file; a missing mask, or a FIFO or folder in its place
    (named as what it is), is reported."""
    try:
        if file_present(mask):
            return True
        issues(MISSING_MASK, str(image), f"no mask {mask}")
    except NotRegularFile as e:
        issues.message(BAD_MASK, str(e))
    return False


def mask_record(image: Path, mask: Path, image_id: str, issues: Issues) -> AnnotatedImage | None:
    """The record of an image and its mask PNG; None when the image's size cannot be read (reported)."""
    size = read_image_size(image, str(image), issues)
    return None if size is None else annotated(image, *size, [], [], mask=mask, image_id=image_id)


def mask_header_size(path: Path) -> tuple[int, int]:
    """(height, width) of a mask PNG from its header (no pixel decoded, no EXIF turn: masks are stored as they are)."""
    try:
        # The size is all that is read: PIL's bomb warning (printed raw) is for decoding.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_regular(path) as f, Image.open(f) as im:
                w, h = im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(one_line(f"{path}: cannot read mask ({exc})")) from None
    return h, w


def load_index_mask(path: Path) -> np.ndarray:
    """uint8 ``[H, W]`` class indices of an 'L' or 'P' PNG (no range/size checks).

    Under the images' decoding budget (data/images.py): a mask is an image too.
    """
    try:
        with open_regular(path) as f, Image.open(f) as im:
            if im.mode not in INDEX_MODES:
                raise DataError(f"{path}: mask mode {im.mode!r}; expected 'L' or 'P' (palette) with class indices")
            if decoded_bytes(im, im.mode) > MAX_DECODED_BYTES:
                w, h = im.size
                raise DataError(f"{path}: mask too large: {w} x {h} pixels take {decoded_bytes(im, im.mode) / 1e6:.0f} MB "
                                f"to decode (limit {MAX_DECODED_BYTES // 1_000_000} MB)")
            return np.array(im, dtype=np.uint8)  # 'P' gives palette indices, not colours
    except Image.DecompressionBombError:
        raise DataError(f"{path}: mask too large (more than {MAX_PIXELS // 1_000_000} MP)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read mask ({exc})") from exc


def value_table(mapping: dict[int, int], unlisted: int = -1) -> tuple[int, ...]:
    """A 256-entry table ``table[stored value] -> class index`` from ``{stored value: class index}``.

    Values absent from ``mapping`` map to ``unlisted`` (-1: a problem when met).
    """
    table = [unlisted] * 256
    for raw, index in mapping.items():
        table[int(raw)] = int(index)
    return tuple(table)


def unlisted_values(mask: np.ndarray, ids: frozenset[int]) -> dict[int, int]:
    """``{value: pixels}`` of the values of a raw mask that are neither class ids nor 255 (ignore)."""
    values, counts = np.unique(mask, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts) if int(v) not in ids and v != IGNORE_INDEX}


def apply_value_table(table: tuple[int, ...], mask: np.ndarray, name: str) -> np.ndarray:
    """Class indices of a stored mask; ``name`` (the mask) is for the message when a value is unlisted."""
    lookup = np.asarray(table, dtype=np.int16)
    present = np.unique(mask)
    unlisted = present[lookup[present] < 0]
    if unlisted.size:
        shown = ", ".join(str(v) for v in unlisted[:5]) + (", ..." if unlisted.size > 5 else "")
        raise DataError(f"{name}: mask values {shown} are not in the value mapping (data.options.mask_values)")
    return lookup[mask].astype(np.uint8)
