"""Output that scales with the number of classes (issue 13, item 5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visiontk.tasks.segment.common import label_map


def test_130_class_upsampling_keeps_the_opencv_path_and_gives_torch_labels(monkeypatch):
    """OpenCV takes at most 128 channels: 130 classes are resized in slices, and the labels are
    exactly those of torch's bilinear resize + argmax. Integer logits and a x4 scale make every
    interpolation weight a power-of-two fraction, so both sums are exact and so are their ties
    (which must go to the first class, as argmax does)."""
    import visiontk.tasks.segment.outputs as outputs

    g = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 12, (130, 6, 8), generator=g).float()
    logits[129, 0, 0] = logits[3, 0, 0] = 40.0  # a tie across slices at the corner: class 3 wins
    logits[128, 5, 7] = 50.0  # a winner in the second slice
    calls = []
    real_resize = outputs.cv2.resize

    def counting_resize(a, *args, **kwargs):
        calls.append(a.shape[2] if a.ndim == 3 else 1)
        return real_resize(a, *args, **kwargs)

    monkeypatch.setattr(outputs.cv2, "resize", counting_resize)
    got = outputs.full_size_labels(logits, (24, 32))
    assert calls == [128, 2]  # the fast path, in two slices; not torch's fallback
    up = F.interpolate(logits[None], size=(24, 32), mode="bilinear", align_corners=False)[0]
    want = label_map(up, 0).numpy()
    assert got.dtype == np.uint8 and got.shape == (24, 32)
    assert np.array_equal(got, want)
    assert got[0, 0] == 3 and got[23, 31] == 128 and (got >= 128).sum() > 0


def _mask_set(root, n_classes: int, per_split: dict[str, int], size: int = 16):
    """A masks-format set: background with one 8 x 8 block of a random class per image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in per_split.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(n):
            mask = np.zeros((size, size), np.uint8)
            y, x = rng.integers(0, size - 8, 2)
            mask[y:y + 8, x:x + 8] = rng.integers(1, n_classes)
            image = (rng.random((size, size, 3)) * 40 + mask[..., None] * (200 / n_classes)).astype(np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"{i}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")


def test_22_classes_keep_results_csv_narrow_and_write_per_class_csv(tmp_path):
    """Past 20 classes: results.csv has no per-class columns, per_class.csv has one row per epoch
    and class (its mean over defined classes is the epoch's mIoU), and the epoch line names
    only the worst and best three classes."""
    import csv

    from helpers import run_cli

    names = [f"c{i:02d}" for i in range(22)]
    _mask_set(tmp_path / "data", 22, {"train": 4, "val": 3})
    result = run_cli("segment", "train", "segment/shapes-unet", "--set", f"data.root={tmp_path / 'data'}",
                     "--set", "data.synthetic=null", "--set", "loss.class_weights=null", "--set", f"data.classes={names}",
                     "--set", "data.image_size=16", "--set", "train.epochs=2", "--set", "train.batch_size=4",
                     "--set", "train.warmup_iters=0",
                     "--set", "loss.kind=ce", "--set", "train.lr=0.02", "--set", "output.plots=false",
                     "--project", str(tmp_path / "runs"), "--name", "many")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "segment" / "many"
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert not [k for k in rows[0] if k.startswith("val/iou/")] and "val/miou" in rows[0]
    per_class = list(csv.DictReader((run / "per_class.csv").open()))
    assert list(per_class[0]) == ["epoch", "class", "iou", "dice"]
    assert [(r["epoch"], r["class"]) for r in per_class] == [(str(e), n) for e in (1, 2) for n in names]
    for epoch, row in zip(("1", "2"), rows):
        ious = [float(r["iou"]) for r in per_class if r["epoch"] == epoch and r["iou"]]
        assert np.mean(ious) == pytest.approx(float(row["val/miou"]), abs=1e-5)
    assert float(rows[1]["val/miou"]) > 0  # (the background's IoU at least: the mean above is not 0 == 0)
    lines = [line for line in result.stderr.splitlines() if line.startswith("epoch 2/2 ")]
    assert len(lines) == 1 and "| iou worst " in lines[0] and " | best " in lines[0]
    assert lines[0].count("=") < 15, lines[0]  # a few scalars + 3 worst + 3 best, not 22 IoUs


def test_worst_and_best_rank_defined_scores_without_overlap():
    from visiontk.metrics.report import worst_and_best

    scores = {"a": 0.5, "b": None, "c": 0.1, "d": float("nan"), "e": 0.9, "f": 0.3, "g": 0.7, "h": 0.2, "i": 0.8}
    assert worst_and_best(scores) == "worst c=0.1 h=0.2 f=0.3 | best e=0.9 i=0.8 g=0.7"
    assert worst_and_best({"a": 0.5, "c": 0.1, "e": 0.9}) == "worst c=0.1 | best e=0.9 a=0.5"
    assert worst_and_best({"a": 0.5}) == "best a=0.5" and worst_and_best({"a": None}) == ""


def _no_overlap(labels, axis: int) -> bool:
    """Tick labels' extents (in display pixels) along `axis` (0: x, 1: y) do not overlap."""
    boxes = sorted((b.x0, b.x1) if axis == 0 else (b.y0, b.y1) for b in labels)
    return all(a[1] <= b[0] + 0.5 for a, b in zip(boxes, boxes[1:]))


def test_80_class_pr_curve_names_the_worst_and_best_outside_the_axes():
    from visiontk.tasks.detect.coco_eval import pr_curve_figure

    recall = np.linspace(0, 1, 101)
    names = [f"class{i}" for i in range(80)]
    ap = {n: (i + 1) / 81 for i, n in enumerate(names)}
    result = {"recall_thresholds": recall, "per_class_ap50": {**ap, "never": None}, "map50": 0.5,
              "pr_curve50": {**{n: np.clip(1 - recall * (1 - ap[n]) * 2, 0, 1) for n in names}, "never": None}}
    fig = pr_curve_figure(result)
    ax = fig.axes[0]
    assert len(ax.lines) == 80 + 1 + 1  # every class, the legend's grey sample, the mean
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["74 other classes", "class0 0.012 (worst)", "class1 0.025 (worst)", "class2 0.037 (worst)",
                      "class79 0.988 (best)", "class78 0.975 (best)", "class77 0.963 (best)", "all 80 classes (mean)"]
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1  # beside the plot, not on it
    assert legend.get_window_extent(renderer).x1 <= fig.bbox.x1 + 1  # and inside the image
    mean = ax.lines[-1].get_ydata()
    assert np.allclose(mean, np.mean([result["pr_curve50"][n] for n in names], axis=0))
    # Few classes: one legend entry each, as before.
    few = {**result, "pr_curve50": {n: result["pr_curve50"][n] for n in names[:4]}}
    assert len(pr_curve_figure(few).axes[0].get_legend().get_texts()) == 4


def test_130_class_confusion_matrix_and_bars_stay_bounded_with_labels_that_do_not_overlap():
    import matplotlib.pyplot as plt

    from visiontk.viz.plots import confusion_matrix_figure, per_class_bars_figure

    names = [f"category_{i:03d}" for i in range(130)]
    fig = confusion_matrix_figure(np.eye(130, dtype=int).tolist(), names)
    fig.tight_layout()  # (lays the text out; no need to draw the pixels)
    renderer = fig.canvas.get_renderer()
    w, h = fig.canvas.get_width_height()
    assert w <= 2400 and h <= 2400  # 0.5 in a class would be 6700 px
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert _no_overlap([t.get_window_extent(renderer) for t in ax.get_yticklabels()], 1)
    assert _no_overlap([t.get_window_extent(renderer) for t in ax.get_xticklabels()], 0)
    plt.close(fig)

    scores = {n: (i * 37 % 130) / 130 for i, n in enumerate(names)}
    scores["category_005"] = None  # absent from the split: listed last
    fig = per_class_bars_figure(scores, "iou")
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    shown = [t.get_text() for t in ax.get_yticklabels()]
    ranked = sorted((n for n in names if scores[n] is not None), key=lambda n: -scores[n])
    assert shown == ranked + ["category_005"]
    assert _no_overlap([t.get_window_extent(renderer) for t in ax.get_yticklabels()], 1)
    assert fig.canvas.get_width_height()[1] <= 4800
    plt.close(fig)


def test_tables_print_whole_when_the_stream_is_not_a_terminal():
    import io

    from rich.table import Table

    from visiontk.console import _EscapingConsole, print_table

    def table():
        t = Table(title="per class")
        for col in ("class", "IoU", "note"):
            t.add_column(col)
        t.add_row("efficientnet_lite0_a_long_class_name", "0.1234", "x" * 90)
        return t

    log = io.StringIO()  # a CI log, `2> log`: no terminal, rich assumes 80 columns
    print_table(table(), _EscapingConsole(file=log, width=80))
    assert "efficientnet_lite0_a_long_class_name" in log.getvalue() and "x" * 90 in log.getvalue()
    assert "…" not in log.getvalue() and len(log.getvalue().splitlines()[2]) > 80
    tty = io.StringIO()  # a terminal 80 columns wide: fitted to it, as rich does
    print_table(table(), _EscapingConsole(file=tty, width=80, force_terminal=True, color_system=None))
    assert max(len(line) for line in tty.getvalue().splitlines()) <= 80 and "x" * 90 not in tty.getvalue()


def test_eval_report_in_a_log_keeps_long_class_names_whole(capsys, monkeypatch):
    """`eval`'s per-class table on stderr redirected to a file (here pytest's capture): whole."""
    from visiontk.metrics.report import Report, print_report

    monkeypatch.setenv("COLUMNS", "80")
    name = "a_category_name_from_a_panoptic_set_that_is_long_" * 2
    print_report(Report("segmentation", {"images": 3, "mIoU": 0.5}, [{"class": name, "IoU": 0.25, "Dice": 0.4}]))
    err = capsys.readouterr().err
    assert name in err and "…" not in err and "0.2500" in err
