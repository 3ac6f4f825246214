"""Synthetic "shapes" data sets (circle / square / triangle) in real on-disk formats.

The sets exist so that every task can be trained, evaluated and tested end to end
without downloading anything: an ImageFolder tree for classification, YOLO txt +
COCO json + a YOLO data.yaml for detection, and image/mask PNG pairs for semantic
segmentation.

Every image is drawn from its own generator seeded by (seed, task, split, index),
so image ``train/00007`` is the same whatever ``n`` or ``val_fraction`` is, and two
runs with the same arguments write byte-identical files.
"""
from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from visiontk.data.formats.paths import inside
from visiontk.data.regular_files import read_regular_text
from visiontk.errors import DataError, UserError, writing

CLASSES: tuple[str, ...] = ("circle", "square", "triangle")
SEG_CLASSES: tuple[str, ...] = ("background",) + CLASSES
SPLITS: tuple[str, ...] = ("train", "val")

MIN_SIZE = 16
# A guard against a typo (e.g. 64000) allocating gigabytes, not a technical limit.
MAX_SIZE = 4096

_GENERATOR = "visiontk.data.synth"
# 2: synth.json lists the files written ("files"), the only ones a later synth removes.
_FORMAT_VERSION = 2
# While a synth runs, synth.json says "complete": false (before any earlier file goes)
# and every file's name is appended to the journal before the file is written: a run
# killed part way (even by SIGKILL) leaves a set that says it is incomplete, and the
# names a later synth must remove. The final synth.json replaces the marker in one
# rename, once every file is there.
_MANIFEST = "synth.json"
_JOURNAL = "synth.incomplete"
_MANIFEST_TMP = ".synth.json.tmp"
# Part of the per-image seed, so that the three tasks don't draw the same scenes.
_TASK_CODES = {"classify": 1, "detect": 2, "segment": 3}

# Wanted distance between a shape's colour and the mean of what lies under it, in
# RGB (Euclidean) and in luminance. The background varies by a few tens of levels,
# so this keeps every shape clearly visible. The luminance bound rules out shapes
# that differ only in hue; in a one-off check (98 k-param CNN, 64 px, Adam 1e-3)
# it made learning a little faster and steadier: >= 93 % top-1 after 3 epochs in
# 3 of 3 seeds, against 2 of 3 without it.
_MIN_CONTRAST = 100.0
_MIN_LUMA_CONTRAST = 60.0
_LUMA = np.array([0.299, 0.587, 0.114])
_COLOUR_TRIES = 32
_PLACEMENT_TRIES = 30


@dataclass(frozen=True)
class Shape:
    """One shape: `cls` indexes CLASSES; it fits in the axis-aligned square of
    side `side` centred on (cx, cy) whatever `angle` (radians, triangles only) is."""

    cls: int
    cx: float
    cy: float
    side: float
    angle: float = 0.0


@dataclass
class SceneObject:
    shape: Shape
    colour: tuple[int, int, int]
    mask: np.ndarray  # bool (size, size): every pixel the shape was drawn on
    bbox: tuple[int, int, int, int]  # x, y, w, h in pixels: tight around `mask`


@dataclass
class Scene:
    image: np.ndarray  # uint8 (size, size, 3): what is written to disk
    background: np.ndarray  # float32 (size, size, 3): before shapes and pixel noise
    clean: np.ndarray  # float32 (size, size, 3): background + shapes, before pixel noise
    objects: list[SceneObject]

    def label_mask(self) -> np.ndarray:
        """uint8 class-index mask (0 = background, 1 + CLASSES index), later objects on top."""
        out = np.zeros(self.image.shape[:2], dtype=np.uint8)
        for obj in self.objects:
            out[obj.mask] = obj.shape.cls + 1
        return out


# ---------------------------------------------------------------- drawing helpers


def draw_shape(draw: ImageDraw.ImageDraw, shape: Shape, fill) -> None:
    """Draw `shape` filled with `fill` on `draw` (any image mode)."""
    r = shape.side / 2.0
    box = [shape.cx - r, shape.cy - r, shape.cx + r, shape.cy + r]
    name = CLASSES[shape.cls]
    if name == "circle":
        draw.ellipse(box, fill=fill)
    elif name == "square":
        draw.rectangle(box, fill=fill)
    elif name == "triangle":
        # Equilateral, inscribed in the circle of radius r, so any rotation stays in the box.
        pts = [
            (shape.cx + r * math.cos(shape.angle + k * 2.0 * math.pi / 3.0),
             shape.cy + r * math.sin(shape.angle + k * 2.0 * math.pi / 3.0))
            for k in range(3)
        ]
        draw.polygon(pts, fill=fill)
    else:  # pragma: no cover - CLASSES and this function must change together
        raise ValueError(f"unknown shape class {shape.cls}")


def shape_mask(shape: Shape, size: int) -> np.ndarray:
    """Boolean (size, size) mask of the pixels `draw_shape` covers.

    Images are painted through this mask rather than drawn directly, so that the
    segmentation masks and detection boxes match the image pixel for pixel.
    """
    canvas = Image.new("L", (size, size), 0)
    draw_shape(ImageDraw.Draw(canvas), shape, fill=1)
    return np.asarray(canvas, dtype=np.uint8).astype(bool)


def make_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random background, float32 (size, size, 3) in about 0..255.

    A base colour, a linear gradient and bicubically upsampled coarse noise: low
    frequencies only, so that edges in the image come from the shapes.
    """
    base = rng.uniform(40.0, 215.0, size=3)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    amp = rng.uniform(0.0, 25.0, size=3)
    t = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    ramp = math.cos(theta) * t[None, :] + math.sin(theta) * t[:, None]
    grid = rng.normal(0.0, 12.0, size=(3, 4, 4)).astype(np.float32)
    out = np.empty((size, size, 3), dtype=np.float32)
    for c in range(3):
        blob = Image.fromarray(grid[c]).resize((size, size), Image.Resampling.BICUBIC)
        out[:, :, c] = base[c] + amp[c] * ramp + np.asarray(blob, dtype=np.float32)
    return out


def _pick_colour(rng: np.random.Generator, under: np.ndarray) -> tuple[int, int, int]:
    """A random colour that contrasts with the mean of `under` (N x 3)."""
    ref = under.mean(axis=0)
    for _ in range(_COLOUR_TRIES):
        colour = rng.integers(0, 256, size=3)
        diff = colour - ref
        if float(np.linalg.norm(diff)) >= _MIN_CONTRAST and abs(float(diff @ _LUMA)) >= _MIN_LUMA_CONTRAST:
            return (int(colour[0]), int(colour[1]), int(colour[2]))
    # Rare fallback: black or white, whichever is further in luminance, is at least
    # 127.5 away in luminance and so (weights' norm < 0.7) over 180 in RGB.
    return (0, 0, 0) if float(ref @ _LUMA) >= 127.5 else (255, 255, 255)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    return (x0, y0, x1 - x0, y1 - y0)


def _too_close(a: tuple[int, int, int, int], b: tuple[int, int, int, int],
               max_iou: float, max_cover: float) -> bool:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    if inter == 0:
        return False
    area_a, area_b = a[2] * a[3], b[2] * b[3]
    iou = inter / (area_a + area_b - inter)
    # IoU alone lets a small box sit inside a big one; the cover test keeps every
    # object mostly visible.
    return iou > max_iou or inter / min(area_a, area_b) > max_cover


def render_scene(
    rng: np.random.Generator,
    size: int,
    classes: list[int],
    side_range: tuple[float, float],
    max_iou: float = 0.1,
    max_cover: float = 0.3,
) -> Scene:
    """Draw one shape per entry of `classes` (CLASSES indices) on a fresh background.

    Sides are `side_range` fractions of `size`; every shape lies fully inside the
    image. A shape whose box overlaps an earlier one too much is re-placed up to
    _PLACEMENT_TRIES times and then dropped, so the first one is always kept.
    """
    background = make_background(rng, size)
    canvas = background.copy()
    objects: list[SceneObject] = []
    for cls in classes:
        placed = None
        for _ in range(_PLACEMENT_TRIES):
            side = rng.uniform(side_range[0], side_range[1]) * size
            half = side / 2.0
            # PIL includes the far edge pixel, hence size - 1.
            cx = rng.uniform(half, size - 1 - half)
            cy = rng.uniform(half, size - 1 - half)
            angle = rng.uniform(0.0, 2.0 * math.pi)
            shape = Shape(int(cls), float(cx), float(cy), float(side), float(angle))
            mask = shape_mask(shape, size)
            if not mask.any():
                continue
            bbox = _bbox(mask)
            if any(_too_close(bbox, o.bbox, max_iou, max_cover) for o in objects):
                continue
            placed = (shape, mask, bbox)
            break
        if placed is None:
            continue
        shape, mask, bbox = placed
        colour = _pick_colour(rng, canvas[mask])
        canvas[mask] = colour
        objects.append(SceneObject(shape, colour, mask, bbox))
    sigma = rng.uniform(2.0, 6.0)
    noisy = canvas + sigma * rng.standard_normal((size, size, 3), dtype=np.float32)
    image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return Scene(image=image, background=background, clean=canvas, objects=objects)


def image_rng(seed: int, task: str, split: str, index: int) -> np.random.Generator:
    """The generator for one image: independent of n, val_fraction and other images."""
    return np.random.default_rng([seed, _TASK_CODES[task], SPLITS.index(split), index])


def classify_scene(seed: int, split: str, index: int, size: int) -> Scene:
    rng = image_rng(seed, "classify", split, index)
    # Cycling through the classes keeps both splits balanced.
    return render_scene(rng, size, [index % len(CLASSES)], side_range=(0.30, 0.70))


def detect_scene(seed: int, split: str, index: int, size: int, max_objects: int) -> Scene:
    rng = image_rng(seed, "detect", split, index)
    count = int(rng.integers(1, max_objects + 1))
    classes = [int(c) for c in rng.integers(0, len(CLASSES), size=count)]
    return render_scene(rng, size, classes, side_range=(0.15, 0.45), max_iou=0.1, max_cover=0.3)


def segment_scene(seed: int, split: str, index: int, size: int, max_objects: int) -> Scene:
    rng = image_rng(seed, "segment", split, index)
    count = int(rng.integers(1, max_objects + 1))
    classes = [int(c) for c in rng.integers(0, len(CLASSES), size=count)]
    # Looser than detection: some occlusion is what makes "later over earlier" matter.
    return render_scene(rng, size, classes, side_range=(0.20, 0.50), max_iou=0.3, max_cover=0.5)


# ---------------------------------------------------------------- validation and output


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_split_args(n, seed, val_fraction, n_min: int = 2, n_why: str = "one train and one val image") -> None:
    """The arguments every generator shares (images, signals, sentences): one-line errors naming each."""
    if not _is_int(n) or n < n_min:
        raise UserError(f"n: must be an integer >= {n_min} ({n_why}), got {n!r}")
    if not _is_int(seed) or seed < 0:
        raise UserError(f"seed: must be an integer >= 0, got {seed!r}")
    if (not isinstance(val_fraction, numbers.Real) or isinstance(val_fraction, bool)
            or not 0.0 < float(val_fraction) < 1.0):
        raise UserError(f"val_fraction: must be a number strictly between 0 and 1, got {val_fraction!r}")


def _split_counts(n: int, size: int, seed: int, val_fraction: float,
                  max_objects: int | None = None) -> tuple[int, int]:
    check_split_args(n, seed, val_fraction)
    if not _is_int(size) or not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"size: must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    if max_objects is not None and (not _is_int(max_objects) or max_objects < 1):
        raise UserError(f"max_objects: must be an integer >= 1, got {max_objects!r}")
    # Rounded, but both splits keep at least one image so that training and evaluation can run.
    n_val = min(max(int(math.floor(n * float(val_fraction) + 0.5)), 1), n - 1)
    return n - n_val, n_val


def _read_manifest(out: Path) -> dict | None:
    try:
        record = json.loads(read_regular_text(out / _MANIFEST))
    except (OSError, ValueError, DataError):
        return None
    return record if isinstance(record, dict) and record.get("generator") == _GENERATOR else None


def incomplete_synth(out: str | Path) -> bool:
    """Whether `out` holds a synthetic set whose writing was stopped part way (its synth.json says so)."""
    record = _read_manifest(Path(out))
    return record is not None and record.get("complete") is False


def _previous_files(out: Path) -> list[str]:
    """The files an earlier synth wrote into `out`, from its synth.json (and, when that run
    was stopped part way, its journal); refused when `out` is not a synth output."""
    previous = _read_manifest(out)
    if not isinstance(previous, dict) or previous.get("generator") != _GENERATOR:
        raise UserError(f"{out}: directory is not empty and is not a previous synth output "
                        "(no valid synth.json); choose a new or empty directory")
    files = previous.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise UserError(f"{out}: synth.json does not list the files it wrote (an older visiontk's); "
                        "choose a new or empty directory, or empty this one yourself")
    if previous.get("complete") is False:
        try:
            files = files + read_regular_text(out / _JOURNAL).splitlines()
        except (OSError, ValueError, DataError):
            pass  # stopped before its first file
    return [*files, _JOURNAL, _MANIFEST_TMP]


def _remove_previous(out: Path, files: list[str]) -> None:
    """Remove what an earlier synth wrote, and nothing else: a file the user added stays.

    synth.json is a file anyone can edit, so its names go through the input
    rule (inside `out`, also after symlinks are resolved) before anything is
    unlinked; folders are removed only when that left them empty.
    """
    out = Path(os.path.abspath(out))
    real_out = os.path.realpath(out)
    folders = set()
    for name in files:
        path = inside(out, name)
        if path is None or name == _MANIFEST:
            continue
        real_parent = os.path.realpath(path.parent)
        if real_parent != real_out and not real_parent.startswith(real_out + os.sep):
            continue  # through a symlinked folder: not a file of this directory
        if path.is_file() or path.is_symlink():
            path.unlink()
        parent = path.parent
        while parent != out and out in parent.parents:
            folders.add(parent)
            parent = parent.parent
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()


class _Output:
    """The output folder and the files written into it (listed in synth.json)."""

    def __init__(self, out: Path):
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise UserError(f"{out}: exists and is not a directory")
        previous = _previous_files(out) if out.is_dir() and any(out.iterdir()) else []
        existed = out.is_dir()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{out}: cannot create directory ({exc.strerror or exc})") from exc
        self.root, self.written, self.previous = out, [], previous
        self.made: set[Path] = set() if existed else {out}
        self.journal = None

    def _manifest(self, record: dict) -> None:
        """synth.json replaced in one rename: a reader sees the old one or the new one, never half of one."""
        tmp = self.root / _MANIFEST_TMP
        try:
            with writing(self.root / _MANIFEST, tmp):
                tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
                os.replace(tmp, self.root / _MANIFEST)
        finally:
            tmp.unlink(missing_ok=True)

    def __enter__(self) -> "_Output":
        try:
            # The set is incomplete from now until finish(): said before an earlier file goes.
            self._manifest({"generator": _GENERATOR, "format_version": _FORMAT_VERSION, "complete": False,
                            "files": self.previous})
            _remove_previous(self.root, [name for name in self.previous if name != _MANIFEST_TMP])
            with writing(self.root / _JOURNAL):
                self.journal = open(self.root / _JOURNAL, "w", encoding="utf-8")
        except BaseException as e:  # a full disk at the first byte: nothing of this run stays
            self.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.journal is not None:
            self.journal.close()
        if exc is not None:
            # Stopped (Ctrl-C, SIGTERM) or failed (a full disk) part way: a partial set
            # would later pass for a whole one (a later `train` would use it), so what
            # this run wrote goes -- its files and the folders it made -- and nothing else.
            # synth.json stays, saying "complete": false, when anything else is left in
            # the folder (a later synth may then write there again); else it goes too.
            _remove_previous(self.root, [*self.written, _JOURNAL, _MANIFEST_TMP])
            if [p.name for p in self.root.iterdir()] in ([_MANIFEST], []):
                (self.root / _MANIFEST).unlink(missing_ok=True)
            for folder in sorted(self.made, key=lambda p: len(p.parts), reverse=True):
                if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                    folder.rmdir()
        return False

    def folder(self, *parts: str) -> Path:
        """`root/parts`, made (with the folders it needs, remembered as this run's)."""
        folder = self.root.joinpath(*parts)
        missing = [p for p in [folder, *folder.parents] if p == self.root or self.root in p.parents]
        self.made.update(p for p in missing if not p.exists())
        with writing(folder):
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    def path(self, *parts: str) -> Path:
        """`root/parts`, its folder made, listed as written (before the write: a failed one is removed too)."""
        self.folder(*parts[:-1])
        name = "/".join(parts)
        self.written.append(name)
        with writing(self.root / _JOURNAL):
            self.journal.write(name + "\n")
            self.journal.flush()  # in the file before the file it names is: a SIGKILL loses no name
        return self.root.joinpath(*parts)

    def png(self, array: np.ndarray, *parts: str) -> None:
        path = self.path(*parts)
        with writing(path):
            Image.fromarray(array).save(path, format="PNG")

    def text(self, text: str, *parts: str) -> None:
        path = self.path(*parts)
        with writing(path):
            path.write_text(text, encoding="utf-8")

    def json(self, data, *parts: str) -> None:
        self.text(json.dumps(data, indent=2) + "\n", *parts)

    def finish(self, summary: dict, params: dict) -> dict:
        # The root is left out of the file: the directory may be moved or copied, and
        # the file should not differ between two identical runs in different places.
        record = {"generator": _GENERATOR, "format_version": _FORMAT_VERSION}
        record.update({k: v for k, v in summary.items() if k != "root"})
        record["params"] = params
        record["files"] = sorted(self.written)
        record["complete"] = True
        self._manifest(record)
        self.journal.close()
        (self.root / _JOURNAL).unlink()
        return summary


def synth_classify(out: Path, n: int = 600, size: int = 64, seed: int = 0,
                   val_fraction: float = 0.25) -> dict:
    """ImageFolder tree: out/{train,val}/<class>/<index:05d>.png, one shape per image."""
    counts = dict(zip(SPLITS, _split_counts(n, size, seed, val_fraction)))
    with _Output(out) as o:
        for split in SPLITS:
            for name in CLASSES:
                # Empty class folders still appear, so every split lists all classes.
                o.folder(split, name)
            for index in range(counts[split]):
                scene = classify_scene(seed, split, index, size)
                o.png(scene.image, split, CLASSES[index % len(CLASSES)], f"{index:05d}.png")
        summary = {"task": "classify", "root": str(o.root), "classes": list(CLASSES), **counts}
        params = {"n": n, "size": size, "seed": seed, "val_fraction": float(val_fraction)}
        return o.finish(summary, params)


def _yolo_line(cls: int, bbox: tuple[int, int, int, int], size: int) -> str:
    x, y, w, h = bbox
    return f"{cls} {(x + w / 2) / size:.6f} {(y + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}"


def _data_yaml() -> str:
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(CLASSES))
    return (
        "# YOLO data file written by visiontk synth; paths are relative to this file's folder.\n"
        "path: .\n"
        "train: images/train\n"
        "val: images/val\n"
        f"nc: {len(CLASSES)}\n"
        f"names:\n{names}"
    )


def synth_detect(out: Path, n: int = 400, size: int = 128, seed: int = 0,
                 val_fraction: float = 0.25, max_objects: int = 4) -> dict:
    """Detection set: images, YOLO txt labels, COCO json and a YOLO data.yaml."""
    counts = dict(zip(SPLITS, _split_counts(n, size, seed, val_fraction, max_objects)))
    with _Output(out) as o:
        categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]
        n_objects = {}
        for split in SPLITS:
            images, annotations = [], []
            for index in range(counts[split]):
                scene = detect_scene(seed, split, index, size, max_objects)
                stem = f"{index:05d}"
                o.png(scene.image, "images", split, f"{stem}.png")
                lines = [_yolo_line(obj.shape.cls, obj.bbox, size) for obj in scene.objects]
                o.text("\n".join(lines) + "\n", "labels", split, f"{stem}.txt")
                # COCO ids start at 1: some tools treat id 0 as "missing".
                image_id = index + 1
                images.append({"id": image_id, "file_name": f"{stem}.png", "width": size, "height": size})
                for obj in scene.objects:
                    x, y, w, h = obj.bbox
                    annotations.append({
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": obj.shape.cls + 1,
                        "bbox": [x, y, w, h],
                        # Box area: the set carries no segmentation polygons.
                        "area": w * h,
                        "iscrowd": 0,
                    })
            o.json({
                "info": {"description": "visiontk synthetic shapes", "version": str(_FORMAT_VERSION)},
                "images": images,
                "annotations": annotations,
                "categories": categories,
            }, "annotations", f"instances_{split}.json")
            n_objects[split] = len(annotations)
        o.text(_data_yaml(), "data.yaml")
        summary = {"task": "detect", "root": str(o.root), "classes": list(CLASSES), **counts, "objects": n_objects}
        params = {"n": n, "size": size, "seed": seed, "val_fraction": float(val_fraction),
                  "max_objects": max_objects}
        return o.finish(summary, params)


def synth_segment(out: Path, n: int = 200, size: int = 128, seed: int = 0,
                  val_fraction: float = 0.25, max_objects: int = 3) -> dict:
    """Segmentation set: out/{train,val}/{images,masks}/<index:05d>.png and classes.txt."""
    counts = dict(zip(SPLITS, _split_counts(n, size, seed, val_fraction, max_objects)))
    with _Output(out) as o:
        for split in SPLITS:
            for index in range(counts[split]):
                scene = segment_scene(seed, split, index, size, max_objects)
                o.png(scene.image, split, "images", f"{index:05d}.png")
                o.png(scene.label_mask(), split, "masks", f"{index:05d}.png")
        o.text("".join(f"{name}\n" for name in SEG_CLASSES), "classes.txt")
        summary = {"task": "segment", "root": str(o.root), "classes": list(SEG_CLASSES), **counts}
        params = {"n": n, "size": size, "seed": seed, "val_fraction": float(val_fraction),
                  "max_objects": max_objects}
        return o.finish(summary, params)
