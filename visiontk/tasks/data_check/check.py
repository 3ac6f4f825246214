"""`visiontk data check` / `data stats`: a data set read as training reads it, counted, without training.

Per split (the recipe's data.train and data.val): the task's adapter reads the
annotations (splits.py; the formats' own problem report), then every image is
decoded by the one image reader of training (`data/images.py` through the
recipe's `Preprocess`: its mode, draft size and errors), and the task's own
rules that apply at load time are run on each record: the detection dataset's
size rule, duplicate boxes, the YOLO-v1 grid's capacity, the masks' pixels.
Problems are the kinds of `data/formats/issues.py`; everything the readers
count is one (training warns about it and skips or clips the entry).
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from visiontk.backbones.normalization import recipe_preprocess
from visiontk.console import plural, recorded_warnings
from visiontk.data.formats.boxes import duplicate_boxes
from visiontk.data.formats.issues import BAD_IMAGE, BOX_DUPLICATE, SIZE_MISMATCH
from visiontk.data.images import open_image
from visiontk.errors import DataError, UserError
from visiontk.outputs.output_file import OutputFile
from visiontk.outputs.output_folder import OutputFolder, next_run_dir

from .splits import SplitData, read_split

FIRST = 5  # offending entries named per problem kind
DECODE_THREADS = min(4, os.cpu_count() or 1)
MAX_CLASS_LINES = 30  # classes printed one a line; the JSON has them all

# What each problem kind means, in the words the report prints beside its name.
ABOUT = {
    "bad_image": "unreadable image (empty, truncated, not an image, too large)",
    "missing_image": "image named by an annotation or a list, not found",
    "missing_mask": "image without its mask",
    "missing_annotation": "id listed without its annotation file",
    "orphan_label": "label file without an image",
    "malformed": "invalid annotation (bad line, missing or invalid field)",
    "unsafe_path": "file name leaving its folder",
    "unknown_class": "invalid class id or name (not in the class list)",
    "box_clipped": "box out of range: partly outside its image (training clips it)",
    "box_outside": "box entirely outside its image (dropped)",
    "box_empty": "empty box: zero or negative width or height (dropped)",
    "box_duplicate": "duplicate box: same class and box as another of its image",
    "size_mismatch": "image size differs from its annotation's (training skips the image)",
    "bad_mask": "mask unreadable, of another size than its image, or with values out of range",
    "unreadable_split": "the split cannot be read",
}
# Sizes of boxes (square root of the area) in pixels of the model input: bin edges.
BOX_SIZE_EDGES = (0, 4, 8, 16, 32, 64, 128, 256, 512)
GREY_MODES = ("1", "L", "LA", "I", "F")

Progress = Callable[[str, int], "object"]  # (description, total) -> a context manager with update(n)


def check_data(recipe, out_dir: Path | None = None, overwrite: bool = False, source: str = "",
               progress: Progress | None = None, layout: str | None = None, plots: bool = True,
               warnings: list[str] | None = None) -> dict:
    """The report of the recipe's data set (both splits) as a JSON-able dict; writes
    ``summary.json`` and (``plots``) the plots into ``out_dir`` (default runs/data-check/<name>).

    ``warnings``: the list of a `recorded_warnings` block around the call (warnings met
    before it, by the layout's detection, included); without it the check records its own."""
    if warnings is None:
        with recorded_warnings() as seen:
            return check_data(recipe, out_dir, overwrite, source, progress, layout, plots, warnings=seen)
    root = Path(recipe.data.root)
    if not root.exists():
        raise UserError(f"{root}: data root does not exist (data.root)")
    folder = OutputFolder(out_dir or next_run_dir(Path("runs"), "data-check", recipe.name), "--out-dir",
                          overwrite=overwrite)
    option = "--out-dir" if out_dir else "the report folder (default; give --out-dir)"
    _refuse_input_folder(folder.path, option, root)
    pre = recipe_preprocess(recipe)
    splits, classes = [], None
    for split in ("train", "val"):
        data = read_split(recipe, split, classes)
        classes = classes or (data.classes or None)
        splits.append(_split_summary(recipe, data, pre, progress))
        _refuse_input_folder(folder.path, option, *{p.parent for p in data.images})
    errors = sum(s["errors"] for s in splits)
    # Warnings are not problems: a set with warnings and no problem is clean (exit 0), and says so
    # with its warnings. Each once, in the order printed (both splits may say the same).
    said = list(dict.fromkeys(warnings))
    summary = {
        "source": source or str(root), "task": recipe.task, "format": recipe.data.format, "root": str(root),
        **({"layout": layout} if layout else {}),
        "input_size": list(recipe.image_size), "errors": errors, "clean": errors == 0,
        "warning_count": len(said), "warnings": said, "splits": splits,
        "out_dir": str(folder.path),
    }
    summary["files"] = [str(p) for p in _write(summary, folder, plots)]
    return summary


def _refuse_input_folder(out: Path, option: str, *inputs: Path) -> None:
    """The output rule (outputs/plan.py): never write into an input. The report folder is
    neither the data set's folder, nor inside it, nor a folder holding its images."""
    real = os.path.realpath(out)
    for p in inputs:
        base = os.path.realpath(p if p.is_dir() or not p.exists() else p.parent)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            raise UserError(f"{out}: {option} is inside the data set ({p}); an output folder is never an input "
                            f"(choose another directory)")


# ----------------------------------------------------------------- one split


def _split_summary(recipe, data: SplitData, pre, progress: Progress | None) -> dict:
    report = data.report
    reader_unreadable = report.counts[BAD_IMAGE]
    sizes: list[tuple[int, int] | None] = []
    modes: Counter = Counter()
    bits: Counter = Counter()
    # Decoding in threads (PIL and libjpeg release the GIL); results in order, counted here.
    with _progress(progress, f"checking {data.name}", len(data.images)) as bar, \
            ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        for i, (hw, mode, depth, error) in enumerate(pool.map(lambda p: _decode(p, pre), data.images)):
            sizes.append(hw)
            if error is not None:
                report.add(BAD_IMAGE, error)
            else:
                modes[mode] += 1
                bits[depth] += 1
                if recipe.task == "detect":
                    _size_rule(data.records[i], hw, report)
            bar.update(1)
    out = {"split": data.split, "name": data.name, "source": data.source,
           "images": _image_stats(len(data.images) + reader_unreadable, report.counts[BAD_IMAGE], modes, bits, sizes)}
    task_stats = {"classify": _classify_stats, "detect": _detect_stats, "segment": _segment_stats}[recipe.task]
    out.update(task_stats(recipe, data, sizes))
    unseen = [r["name"] for r in out.get("classes", []) if r["images"] == 0]
    if unseen:
        data.notes["classes_without_images"] = {"count": len(unseen), "about": "classes without any image in this split",
                                                "first": unseen[:FIRST]}
    out["problems"] = {kind: {"count": n, "about": ABOUT.get(kind, kind), "first": report.examples(kind, FIRST)}
                       for kind, n in sorted(report.counts.items())}
    out["errors"] = report.total
    out["notes"] = data.notes
    return out


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int = 1) -> None:
        pass


def _progress(progress: Progress | None, description: str, total: int):
    return progress(description, total) if progress is not None else _NoBar()


def _decode(path: Path, pre) -> tuple[tuple[int, int] | None, str, int, str | None]:
    """((h, w) of the file as displayed, its mode, its bits per sample, None) decoded as
    training decodes it; (None, '', 0, the error) when it cannot be."""
    try:
        img = open_image(path, pre.mode, draft_size=pre.draft_size)
    except DataError as e:
        return None, "", 0, str(e)
    w, h = img.info["original_size"]
    return (int(h), int(w)), img.info["file_mode"], img.info["file_bits"], None


def _size_rule(record, hw: tuple[int, int], report) -> None:
    from visiontk.tasks.detect.dataset import size_mismatch

    problem = size_mismatch(record, hw)
    if problem is not None:
        report.add(SIZE_MISMATCH, problem)


def _image_stats(count: int, unreadable: int, modes: Counter, bits: Counter, sizes: list) -> dict:
    read = np.array([s for s in sizes if s is not None], dtype=np.int64).reshape(-1, 2)
    stats = {
        "count": count, "unreadable": unreadable,
        "grey": sum(n for m, n in modes.items() if m in GREY_MODES or m.startswith("I;16")),
        "high_bit_depth": sum(n for b, n in bits.items() if b > 8),
        "cmyk": modes.get("CMYK", 0),
        "modes": dict(sorted(modes.items())),
    }
    if len(read):
        common = Counter(map(tuple, read.tolist())).most_common(FIRST)
        stats["sizes"] = {"min_hw": read.min(0).tolist(), "max_hw": read.max(0).tolist(),
                          "median_hw": [int(v) for v in np.median(read, 0)], "distinct": len(set(map(tuple, read.tolist()))),
                          "most_common": [[h, w, n] for (h, w), n in common]}
    return stats


# ----------------------------------------------------------------- per task


def _class_rows(data: SplitData, images: np.ndarray, instances: np.ndarray | None) -> list[dict]:
    rows = []
    for k, name in enumerate(data.classes):
        row = {"name": name}
        if data.category_ids:
            row["id"] = data.category_ids[k]
        row["images"] = int(images[k])
        if instances is not None:
            row["instances"] = int(instances[k])
        rows.append(row)
    return rows


def _classify_stats(recipe, data: SplitData, sizes: list) -> dict:
    k = len(data.classes)
    labels = np.asarray([lab for lab, s in zip(data.records, sizes) if s is not None], dtype=np.int64)
    counts = np.bincount(labels, minlength=k)
    return {"classes": _class_rows(data, counts, counts)}


def _detect_stats(recipe, data: SplitData, sizes: list) -> dict:
    from visiontk.tasks.detect.grid_capacity import grid_capacity

    k = len(data.classes)
    images, instances = np.zeros(k, np.int64), np.zeros(k, np.int64)
    box_sizes = []
    in_h, in_w = recipe.image_size
    for rec in data.records:
        labels = rec.labels
        instances += np.bincount(labels, minlength=k)[:k]
        images[np.unique(labels)] += 1
        for i, j in duplicate_boxes(rec.boxes, labels):
            box = ", ".join(f"{v:g}" for v in rec.boxes[j].tolist())
            data.report.add(BOX_DUPLICATE, f"{rec.image}: box {j} [{box}] ({data.classes[labels[j]]}) "
                                           f"repeats box {i}")
        if len(labels):
            wh = (rec.boxes[:, 2:] - rec.boxes[:, :2]) * np.array([in_w / rec.width, in_h / rec.height])
            box_sizes.append(np.sqrt(wh.prod(axis=1)))
    sizes_in = np.concatenate(box_sizes) if box_sizes else np.zeros(0)
    edges = [e for e in BOX_SIZE_EDGES if e < max(in_h, in_w)] + [max(in_h, in_w)]
    counts = np.histogram(np.clip(sizes_in, 0, edges[-1]), bins=edges)[0]
    head = recipe.model.head
    capacity = grid_capacity(data.records, head.S, head.B, k)
    return {
        "classes": _class_rows(data, images, instances),
        "boxes": {
            "count": int(len(sizes_in)),
            "about": f"square root of the area, in pixels of the {in_w}x{in_h} model input",
            "edges": edges, "counts": counts.tolist(),
            **({"min": round(float(sizes_in.min()), 2), "median": round(float(np.median(sizes_in)), 2),
                "max": round(float(sizes_in.max()), 2)} if len(sizes_in) else {}),
        },
        "grid": {**capacity.to_dict(FIRST), "text": capacity.text()},
    }


def _segment_stats(recipe, data: SplitData, sizes: list) -> dict:
    from visiontk.tasks.segment.readers import IGNORE_INDEX, load_mask

    k = len(data.classes)
    pixels, images = np.zeros(256, np.int64), np.zeros(k, np.int64)
    background_only = []
    for rec, size in zip(data.records, sizes):
        if size is None:
            continue  # the image is unreadable: training skips the pair
        try:
            counts = np.bincount(load_mask(rec).ravel(), minlength=256)
        except DataError:
            continue  # reported by the mask checks of the reader
        pixels += counts
        images += counts[:k] > 0
        if not counts[1:k].any():
            background_only.append(rec.image)
    labelled = int(pixels[:k].sum())
    rows = _class_rows(data, images, None)
    for k_, row in enumerate(rows):
        row["pixels"] = int(pixels[k_])
        row["pixel_frequency"] = round(int(pixels[k_]) / labelled, 6) if labelled else 0.0
    if background_only:
        data.notes["masks_without_objects"] = {"count": len(background_only), "about": f"masks holding only class 0 "
                                               f"({data.classes[0]}) and ignored pixels",
                                               "first": [str(p) for p in background_only[:FIRST]]}
    return {"classes": rows, "pixels": {"labelled": labelled, "ignored": int(pixels[IGNORE_INDEX])}}


# ----------------------------------------------------------------- files


def _write(summary: dict, folder: OutputFolder, plots: bool) -> list[Path]:
    """summary.json, and the plots beside it: per class (images, instances or share of
    pixels, one bar per split) and, for detection, the box-size histogram."""
    from visiontk.outputs.json_text import dumps

    folder.path.mkdir(parents=True, exist_ok=True)
    written = [folder.path / "summary.json"]
    if plots:
        written += _plots(summary, folder.path)
    OutputFile(written[0], overwrite=True).write_text(dumps({**summary, "files": [str(p) for p in written]}) + "\n")
    return written


def _plots(summary: dict, path: Path) -> list[Path]:
    from visiontk.viz.data_plots import plot_bars

    task, splits = summary["task"], summary["splits"]
    key, what, name = {"classify": ("images", "images", "classes.png"),
                       "detect": ("instances", "instances", "classes.png"),
                       "segment": ("pixel_frequency", "share of labelled pixels", "pixel_frequency.png")}[task]
    names = [r["name"] for r in splits[0].get("classes", [])]
    written = []
    if names:
        per_split = {s["name"]: [r[key] for r in s["classes"]] for s in splits if len(s.get("classes", [])) == len(names)}
        written.append(plot_bars(names, per_split, path / name, f"{what} per class", what))
    boxes = {s["name"]: s["boxes"] for s in splits if s.get("boxes", {}).get("count")}
    if boxes:
        first = next(iter(boxes.values()))
        edges = first["edges"]
        bins = [f"{a}-{b} px" for a, b in zip(edges[:-1], edges[1:])]
        written.append(plot_bars(bins, {n: b["counts"] for n, b in boxes.items()}, path / "box_sizes.png",
                                 f"box sizes: {first['about']}", "boxes"))
    return written


# ----------------------------------------------------------------- text


def summary_lines(summary: dict, verdict: bool = True) -> Iterable[str]:
    """The report as lines for a terminal (the JSON holds the same and more)."""
    layout = f"; {summary['layout']}" if summary.get("layout") else ""
    yield f"{summary['source']}: {summary['task']} ({summary['format']}{layout}), input {summary['input_size'][1]}x" \
          f"{summary['input_size'][0]}"
    for s in summary["splits"]:
        im = s["images"]
        yield ""
        yield f"{s['split']} ({s['name']}, {s['source']})"
        sizes = im.get("sizes")
        size_text = "" if not sizes else (f"; sizes {sizes['min_hw'][1]}x{sizes['min_hw'][0]} to {sizes['max_hw'][1]}x"
                                          f"{sizes['max_hw'][0]}, median {sizes['median_hw'][1]}x{sizes['median_hw'][0]}")
        yield (f"  images: {im['count']}, {im['unreadable']} unreadable, {im['grey']} grey, {im['high_bit_depth']} "
               f"16-bit or more, {im['cmyk']} CMYK{size_text}")
        for kind, p in s["problems"].items():
            yield f"  {kind} ({p['about']}): {p['count']}"
            for line in p["first"]:
                yield f"    {line}"
        for kind, n in s["notes"].items():
            first = f"; first: {', '.join(n['first'][:3])}" if n["first"] else ""
            yield f"  note: {n['count']} {n['about']}{first}"
        if s.get("classes"):
            yield "  per class:"
            for row in s["classes"][:MAX_CLASS_LINES]:
                yield f"    {_class_text(row)}"
            if len(s["classes"]) > MAX_CLASS_LINES:
                yield f"    and {plural(len(s['classes']) - MAX_CLASS_LINES, 'more class', 'more classes')} (all in summary.json)"
        if s.get("boxes") and s["boxes"]["count"]:
            b = s["boxes"]
            bins = ", ".join(f"{a}-{e}: {n}" for a, e, n in zip(b["edges"][:-1], b["edges"][1:], b["counts"]))
            yield f"  box sizes ({b['about']}): {bins}"
        if s.get("grid"):
            yield f"  YOLO-v1 grid: {s['grid']['text']}"
        if s.get("pixels"):
            yield f"  pixels: {s['pixels']['labelled']} labelled, {s['pixels']['ignored']} ignored (255)"
    yield ""
    said = summary.get("warnings") or []
    if said:
        yield f"{plural(len(said), 'warning')} (not problems; in summary.json 'warnings'):"
        for text in said:
            yield f"  {text}"
    if verdict:
        if not summary["clean"]:
            yield f"errors: {plural(summary['errors'], 'problem')} in the data set (see above)"
        elif said:
            yield f"clean: no problems found, but {plural(len(said), 'warning')} (see above)"
        else:
            yield "clean: no problems found"
    yield f"wrote {', '.join(summary['files'])}"


def _class_text(row: dict) -> str:
    ident = f" (id {row['id']})" if "id" in row else ""
    parts = [plural(row["images"], "image")]
    if "instances" in row:
        parts.append(plural(row["instances"], "instance"))
    if "pixels" in row:
        parts.append(f"{row['pixel_frequency']:.1%} of pixels")
    return f"{row['name']}{ident} {', '.join(parts)}"
