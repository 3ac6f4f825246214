"""What `eval` reports is what `predict` does, per task: the metrics recomputed from
predict's outputs equal `eval --json` on the same images, up to the rounding of the
written numbers.

The images are the awkward ones: JPEGs more than 2x the input (area resizing, and
draft decoding at 1/2-1/4 scale), grey, 16-bit PNG, RGBA, palette, CMYK and
EXIF-rotated files, one smaller than the input. The models are untrained
checkpoints (tests/untrained.py): parity needs non-trivial predictions, not good ones.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli
from PIL import Image
from untrained import save_untrained_checkpoint

SIZE = 64  # every model's input side
BATCH = "32"  # more than the images: eval and predict run the model on the same one batch


def _photo(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Smooth gradients, blobs and noise: JPEG-like content that gives an untrained model varied outputs."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * x + rng.uniform(0, 6)), np.cos(5 * y + rng.uniform(0, 6)),
                     np.sin(4 * (x + y) + rng.uniform(0, 6))], -1)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, h / max(h, w)), rng.uniform(0.05, 0.3)
        base += rng.uniform(-1, 1, 3) * ((x - cx) ** 2 + (y - cy) ** 2 < r * r)[..., None]
    img = (base - base.min()) / (np.ptp(base) + 1e-9) * 255 + rng.normal(0, 6, base.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(folder: Path, seed: int) -> dict[str, tuple[int, int]]:
    """The awkward image set in `folder`: {file name: displayed (h, w)}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}

    def save(name: str, img: Image.Image, **kw) -> None:
        img.save(folder / name, **kw)
        w, h = img.size
        sizes[name] = (w, h) if kw.get("exif") else (h, w)  # orientation 6: displayed turned by 90 degrees

    # > 2x the input: area resizing; 320x240 is also draft-decoded at 1/2 (160x120).
    save("big.jpg", Image.fromarray(_photo(rng, 320, 240)), quality=90)
    save("huge.jpg", Image.fromarray(_photo(rng, 600, 520)), quality=90)  # draft at 1/4
    save("grey.png", Image.fromarray(_photo(rng, 90, 70)).convert("L"))
    grey16 = (_photo(rng, 80, 72)[..., 0].astype(np.uint16) * 257) ^ rng.integers(0, 256, (72, 80), dtype=np.uint16)
    save("grey16.png", Image.fromarray(grey16))  # mode I;16: scaled, not clipped
    rgba = np.dstack([_photo(rng, 70, 84), rng.integers(0, 256, (84, 70), dtype=np.uint8)])
    save("rgba.png", Image.fromarray(rgba, "RGBA"))
    save("palette.png", Image.fromarray(_photo(rng, 76, 60)).convert("P", palette=Image.Palette.ADAPTIVE))
    save("cmyk.jpg", Image.fromarray(_photo(rng, 150, 140)).convert("CMYK"), quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 200 wide x 140 high, displayed 140 x 200
    save("exif.jpg", Image.fromarray(_photo(rng, 200, 140)), quality=90, exif=exif)
    save("small.jpg", Image.fromarray(_photo(rng, 40, 30)), quality=90)  # enlarged to the input
    return sizes


def untrained(tmp_path: Path, recipe: str, overrides: list[str], classes: list[str]) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return save_untrained_checkpoint(tmp_path / "ckpt" / "best.pt", recipe, overrides, classes)
    finally:
        torch.set_num_threads(threads)


def trained(tmp_path: Path, recipe: str, overrides: list[str]) -> Path:
    """Two epochs in-process on one thread: batch-norm statistics of real activations,
    so that outputs depend on the image (an untrained detector scores every image alike)."""
    from visiontk.engine.trainer import Trainer
    from visiontk.tasks.recipes import load_recipe

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        r = load_recipe(recipe, [*overrides, "train.epochs=2", "output.plots=false"])
        return Path(Trainer(r, device="cpu", project=str(tmp_path / "runs"), name="t").fit()["run_dir"]) / "last.pt"
    finally:
        torch.set_num_threads(threads)


def cli_json(*args: str) -> dict:
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


# predict's --precision auto may pick bf16 where it measured faster (runtime_choice.py);
# eval computes its metrics in fp32, so the predictions compared with it are fp32 too.
FP32 = ("--precision", "fp32")


# ---------------------------------------------------------------- the pixels


def test_eval_datasets_and_the_predictor_give_the_model_the_same_numbers(tmp_path):
    """Bit for bit, on every awkward file: the evaluation dataset's tensor (per image,
    on the CPU) and the predictor's (decoding workers, then the fused batch normalisation)."""
    from visiontk.data.preprocess import Preprocess
    from visiontk.engine.build import model_from_checkpoint
    from visiontk.engine.predictor import Predictor
    from visiontk.tasks.registry import get_task

    root = tmp_path / "data"
    write_images(root / "val" / "x", seed=6)
    ckpt = untrained(tmp_path, "classify/shapes", [f"data.image_size={SIZE}", "model.backbone_options.width=4"], ["x"])
    _, meta = model_from_checkpoint(ckpt, "classify")
    dataset, _ = get_task("classify").build_dataset(meta["recipe_obj"], "val", train=False, classes=["x"],
                                                    root=str(root), preprocess=Preprocess.from_checkpoint(meta))
    predictor = Predictor(ckpt, "classify", device="cpu")
    for (path, _), (x, _) in zip(dataset.samples, dataset):
        pixels, _ = predictor.load_pixels(path)
        assert torch.equal(predictor.preprocess.normalize_batch(torch.as_tensor(pixels)[None])[0], x), path.name


# ---------------------------------------------------------------- classify


def test_classify_top1_from_predict_equals_eval(tmp_path):
    root = tmp_path / "data"
    paths = []
    for k, cls in enumerate(["ants", "bees"]):
        names = write_images(root / "val" / cls, seed=k)
        paths += [root / "val" / cls / n for n in sorted(names)]
    ckpt = untrained(tmp_path, "classify/shapes", [f"data.image_size={SIZE}", "model.backbone_options.width=4",
                                                   "model.head.pool=avg"], ["ants", "bees"])
    metrics = cli_json("classify", "eval", str(ckpt), str(root), "--json", "--batch-size", BATCH)
    res = run_cli("classify", "predict", str(ckpt), *FP32, *map(str, paths), "--batch-size", BATCH)
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in paths]
    correct = sum(r["label"] == Path(r["path"]).parent.name for r in records)
    assert metrics["count"] == len(paths) == 18
    assert 0 < correct < len(paths)  # the untrained model says both classes
    assert metrics["top1"] == pytest.approx(correct / len(paths), abs=1e-9)


# ---------------------------------------------------------------- detect


def test_detect_pycocotools_on_predict_output_equals_eval(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root = tmp_path / "data"
    sizes = write_images(root / "images" / "val", seed=2)
    rng = np.random.default_rng(3)
    images, annotations = [], []
    for i, (name, (h, w)) in enumerate(sorted(sizes.items())):
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
        # The barely trained head predicts boxes of 1/4 of the image's sides at the centres
        # of its 4 x 4 cells: a box near one of them matches (IoU >= 0.5), a random one rarely.
        cx, cy = rng.integers(0, 4, 2) / 4 + 1 / 8 + rng.uniform(-0.01, 0.01, 2)
        side = rng.uniform(0.22, 0.24, 2)
        boxes = [((cx - side[0] / 2) * w, (cy - side[1] / 2) * h, side[0] * w, side[1] * h)]
        bw, bh = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        boxes.append((rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh))
        for x, y, bw, bh in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(rng.integers(1, 3)),
                                "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
    gt_file = root / "annotations" / "instances_val.json"
    gt_file.parent.mkdir(parents=True)
    gt_file.write_text(json.dumps({"images": images, "annotations": annotations,
                                   "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    ckpt = trained(tmp_path, "detect/shapes", [f"data.root={root}", "data.train=val", f"data.image_size={SIZE}",
                                               "model.backbone_options.width=4", "model.head.S=4", "model.head.width=16",
                                               "data.classes=[a, b]", "train.warmup_iters=0", "train.batch_size=4"])
    # The head starts with tiny weights, and two epochs leave its scores within 1e-4 of
    # each other, which the 5 decimals of the written scores would turn into ties.
    # Spread the scores (the confidences of both boxes and the two class scores), not the boxes.
    state = torch.load(ckpt, weights_only=True)
    weight = state["model"]["head.pred.weight"]
    weight[[4, 9, 10, 11]] = 50 * torch.randn(4, *weight.shape[1:], generator=torch.Generator().manual_seed(0))
    torch.save(state, ckpt)
    metrics = cli_json("detect", "eval", str(ckpt), str(root), "--json", "--batch-size", BATCH)
    paths = [str(root / "images" / "val" / im["file_name"]) for im in images]
    out = tmp_path / "predictions.json"
    res = run_cli("detect", "predict", str(ckpt), *FP32, *paths, "--format", "coco", "--out", str(out),
                  "--conf", str(metrics["conf"]), "--iou", str(metrics["iou"]), "--max-det", str(metrics["max_det"]),
                  "--batch-size", BATCH)
    assert res.returncode == 0, res.stderr
    found = json.loads(out.read_text())
    assert metrics["conf"] == 0.001 and len(found) == metrics["detections"] > 0
    # Images by file name: the results file numbers them by input position.
    ids = {str(root / "images" / "val" / im["file_name"]): im["id"] for im in images}
    results = [{"image_id": ids[d["file_name"]], "category_id": d["category_id"], "bbox": d["bbox"],
                "score": d["score"]} for d in found]
    gt = COCO(str(gt_file))
    ev = COCOeval(gt, gt.loadRes(results), iouType="bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert metrics["map50"] > 0  # non-trivial: some boxes match
    # Boxes are written to 0.01 px and scores to 1e-5: with well-spread scores that
    # changes no ranking and no match (measured: equal to 1e-9).
    assert ev.stats[0] == pytest.approx(metrics["map"], abs=1e-6)
    assert ev.stats[1] == pytest.approx(metrics["map50"], abs=1e-6)
    assert ev.stats[2] == pytest.approx(metrics["map75"], abs=1e-6)


# ---------------------------------------------------------------- segment


def test_segment_confusion_matrix_from_predicted_masks_equals_eval(tmp_path):
    root = tmp_path / "data"
    sizes = write_images(root / "val" / "images", seed=4)
    rng = np.random.default_rng(5)
    (root / "val" / "masks").mkdir(parents=True)
    truth = {}
    for name, (h, w) in sizes.items():
        # Blocky class regions at the image's displayed size, some pixels ignored (255).
        mask = np.kron(rng.integers(0, 3, (4, 4)), np.ones((h // 4 + 1, w // 4 + 1), dtype=np.int64))[:h, :w]
        mask[rng.random((h, w)) < 0.02] = 255
        truth[name] = mask.astype(np.uint8)
        Image.fromarray(truth[name], "L").save(root / "val" / "masks" / f"{Path(name).stem}.png")
    classes = ["bg", "a", "b"]
    ckpt = trained(tmp_path, "segment/shapes-unet", [f"data.root={root}", "data.train=val", f"data.image_size={SIZE}",
                                                     "model.backbone_options.width=4", f"data.classes={classes}",
                                                     "loss.class_weights=null", "train.batch_size=4"])
    # Two epochs on 9 images predict the majority class everywhere: a random 1x1 classifier
    # on the decoder's features gives every class somewhere, with boundaries in between.
    state = torch.load(ckpt, weights_only=True)
    head = state["model"]["decoder.head.weight"]
    head.copy_(3 * torch.randn(head.shape, generator=torch.Generator().manual_seed(0)))
    state["model"]["decoder.head.bias"].zero_()
    torch.save(state, ckpt)
    metrics = cli_json("segment", "eval", str(ckpt), str(root), "--json", "--batch-size", BATCH)
    paths = [root / "val" / "images" / n for n in sorted(sizes)]
    res = run_cli("segment", "predict", str(ckpt), *FP32, *map(str, paths), "--out-dir", str(tmp_path / "masks"),
                  "--batch-size", BATCH)
    assert res.returncode == 0, res.stderr
    cm = np.zeros((3, 3), dtype=np.int64)
    for record in map(json.loads, res.stdout.splitlines()):
        pred = np.asarray(Image.open(record["mask"]))
        gt = truth[Path(record["path"]).name]
        assert pred.shape == gt.shape  # written at the image's own (displayed) size
        keep = gt != 255
        cm += np.bincount(gt[keep].astype(np.int64) * 3 + pred[keep], minlength=9).reshape(3, 3)
    assert metrics["scored_at"] == "image_size" and metrics["images"] == len(paths)
    assert (np.diag(cm) > 0).sum() >= 2 and cm.sum() == metrics["pixels"]  # non-trivial predictions
    assert cm.tolist() == metrics["confusion_matrix"]

    # The training size on request, and said so in the table's title.
    res = run_cli("segment", "eval", str(ckpt), str(root), "--at", "input-size", "--batch-size", BATCH)
    assert res.returncode == 0, res.stderr
    assert "scored at the model's input size" in res.stderr and "pixels" in res.stderr
