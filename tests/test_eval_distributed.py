"""Evaluation shared by 2 gloo processes gives exactly the metrics of one process.

Each process scores its shard of the split (engine.distributed.ShardSampler),
then the metric syncs: confusion matrices and counts are summed, detection's
images gathered and scored once. The val sets have an odd number of images,
so the two shards differ by one image (and end in batches of different sizes).
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist

from helpers import run_warm, torch_threads

from visiontk.data.synth import synth_classify, synth_detect, synth_segment
from visiontk.engine.build import build_model
from visiontk.engine.distributed import ShardSampler
from visiontk.engine.evaluator import eval_loader, evaluate
from visiontk.tasks.recipes import load_recipe
from visiontk.tasks.registry import get_task

WORLD = 2
TINY = ["model.backbone_options.width=4", "data.augment=[]"]
# recipe, overrides, synthetic set writer and its arguments: tiny images and models, an odd val split.
CASES = {
    "classify": ("classify/shapes", ["data.image_size=32"], synth_classify, dict(n=12, size=32, seed=3)),
    "segment": ("segment/shapes-unet", ["data.image_size=32"], synth_segment, dict(n=20, size=32, seed=3)),
    "detect": ("detect/shapes", ["data.image_size=64", "model.head.S=4", "model.head.width=8"], synth_detect,
               dict(n=20, size=64, seed=3)),
}
BATCH = 2

pytestmark = pytest.mark.usefixtures("one_thread")


def _recipe(name: str, root):
    recipe_name, overrides, _, _ = CASES[name]
    return load_recipe(recipe_name, [f"data.root={root / name}", *TINY, *overrides])


def _evaluate(name: str, root, weights) -> dict:
    recipe = _recipe(name, root)
    task = get_task(name)
    dataset, classes = task.build_dataset(recipe, "val", train=False)
    model = build_model(recipe, len(classes), load_weights=False)
    model.load_state_dict(torch.load(weights / f"{name}.pt", weights_only=True))
    return evaluate(task, model, eval_loader(task, dataset, BATCH), torch.device("cpu"), classes)


def _as_text(metrics: dict) -> str:
    # Exact comparison, NaN included (NaN != NaN as a float, equal as text).
    return json.dumps(metrics, sort_keys=True)


def _run_ranks(fn, tmp_path, *args) -> None:
    """`fn(rank, *args)` in WORLD processes joined in one gloo group."""
    run_warm(_in_group, [(rank, fn, str(tmp_path / "store"), *args) for rank in range(WORLD)])


def _in_group(rank: int, fn, store: str, *args) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


def _evaluate_on_rank(rank: int, root, weights, out) -> None:
    results = {name: _as_text(_evaluate(name, root, weights)) for name in CASES}
    (out / f"rank{rank}.json").write_text(json.dumps(results))


def _fitted(name: str, recipe, dataset, classes, steps: int = 40) -> torch.nn.Module:
    """The tiny model fitted a little to the val images themselves: predictions that
    score above zero (a random detector's mAP is 0) and differ between images."""
    task = get_task(name)
    torch.manual_seed(0)
    model = build_model(recipe, len(classes), load_weights=False)
    loss_fn = task.build_loss(recipe, len(classes))
    images, targets = task.collate([dataset[i] for i in range(len(dataset))])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss, _ = loss_fn(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    weights = tmp_path_factory.mktemp("weights")
    with torch_threads(1):  # tiny tensors: one thread is faster on a shared CPU
        for name, (_, _, synth, options) in CASES.items():
            synth(root / name, **options)
            recipe = _recipe(name, root)
            dataset, classes = get_task(name).build_dataset(recipe, "val", train=False)
            torch.save(_fitted(name, recipe, dataset, classes).state_dict(), weights / f"{name}.pt")
    return root, weights


# ---------------------------------------------------------------- sync of each metric


def _classify_batch(rank: int):
    g = torch.Generator().manual_seed(rank)
    return torch.randn(5 + rank, 4, generator=g), torch.randint(0, 4, (5 + rank,), generator=g)


def _segment_batch(rank: int):
    """Rank 0: a list of two images of different sizes; rank 1: one [N, H, W] batch."""
    g = torch.Generator().manual_seed(10 + rank)
    sizes = [(3, 5), (4, 2)] if rank == 0 else [(3, 3), (3, 3)]
    labels = [torch.randint(0, 3, size, generator=g) for size in sizes]
    masks = [torch.randint(0, 3, size, generator=g) for size in sizes]
    masks[0][0, 0] = 255  # ignored (a pixel on each rank)
    return (labels, masks) if rank == 0 else (torch.stack(labels), torch.stack(masks))


def _detect_image(image_id: int):
    """One box of class 0 per image; every detection scores 0.9. Image 1's detection
    misses, image 2's hits: tied scores, so the AP depends on the images' order."""
    gt = {"boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0]]), "labels": torch.tensor([0]), "width": 64, "height": 64,
          "image_id": image_id}
    box = [[10.0, 10.0, 30.0, 30.0]] if image_id != 1 else [[40.0, 40.0, 60.0, 60.0]]
    return {"boxes": torch.tensor(box), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}, gt


def _metrics():
    from visiontk.metrics.classification import ClassificationMetric
    from visiontk.tasks.detect.metric import DetectionMetric
    from visiontk.tasks.segment.metrics import SegmentationMetric

    return {"classify": ClassificationMetric(4), "segment": SegmentationMetric(["a", "b", "c"], 255),
            "detect": DetectionMetric(["a"], conf=0.001, iou=0.5, max_det=100)}


def _detect_update(metric, image_ids):
    dets, gts = zip(*(_detect_image(i) for i in image_ids))
    metric.update(list(dets), list(gts))


SHARD_IDS = {0: [0, 2], 1: [1]}  # as ShardSampler deals 3 images to 2 ranks


def _sync_on_rank(rank: int, out) -> None:
    mine = _metrics()
    mine["classify"].update(*_classify_batch(rank))
    mine["segment"].update(*_segment_batch(rank))
    _detect_update(mine["detect"], SHARD_IDS[rank])
    for metric in mine.values():
        metric.sync()
    results = {name: _as_text(metric.compute()) for name, metric in mine.items()}
    results["classify_confusion"] = mine["classify"].confusion.mat.tolist()
    (out / f"sync{rank}.json").write_text(json.dumps(results))


def test_sync_sums_counts_and_gathers_images_in_split_order(tmp_path):
    _run_ranks(_sync_on_rank, tmp_path, tmp_path)
    # What one process holding both ranks' batches computes.
    whole = _metrics()
    for rank in range(WORLD):
        whole["classify"].update(*_classify_batch(rank))
        whole["segment"].update(*_segment_batch(rank))
    _detect_update(whole["detect"], [0, 1, 2])
    expected = {name: metric.compute() for name, metric in whole.items()}
    per_rank = []
    for rank in range(WORLD):
        one = _metrics()["classify"]
        one.update(*_classify_batch(rank))
        per_rank.append(one.confusion.mat)
    assert expected["classify"]["count"] == 11 and expected["segment"]["images"] == 4
    assert expected["segment"]["pixels"] == 15 + 8 + 9 + 9 - 2  # one ignored pixel per rank
    # One detection of three misses, and it comes before the tied hit of image 2: AP@.5 below 1.
    assert 0 < expected["detect"]["map50"] < 1
    for rank in range(WORLD):
        got = json.loads((tmp_path / f"sync{rank}.json").read_text())
        assert got["classify_confusion"] == (per_rank[0] + per_rank[1]).tolist()
        for name in ("classify", "segment", "detect"):
            assert got[name] == _as_text(expected[name]), (rank, name)


# ---------------------------------------------------------------- the engine's loop over 2 processes


def test_shards_take_every_index_once_however_the_set_divides():
    for length in (0, 1, 7, 8):
        shards = [list(ShardSampler(length, 3, r)) for r in range(3)]
        assert [len(ShardSampler(length, 3, r)) for r in range(3)] == [len(s) for s in shards]
        assert sorted(i for s in shards for i in s) == list(range(length))
    assert list(ShardSampler(7, 2, 1)) == [1, 3, 5]


def test_two_processes_score_exactly_as_one(tiny_sets, tmp_path):
    root, weights = tiny_sets
    single = {}
    for name in CASES:
        task = get_task(name)
        dataset, _ = task.build_dataset(_recipe(name, root), "val", train=False)
        assert len(dataset) % WORLD == 1  # uneven shards
        single[name] = _evaluate(name, root, weights)
    # The numbers compared are not trivial ones.
    assert 0 < single["classify"]["count"] and sum(map(sum, single["classify"]["confusion_matrix"])) == single["classify"]["count"]
    assert single["segment"]["pixels"] == single["segment"]["images"] * 32 * 32
    assert single["detect"]["detections"] > 0 and single["detect"]["map50"] > 0

    _run_ranks(_evaluate_on_rank, tmp_path, root, weights, tmp_path)
    for rank in range(WORLD):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for name in CASES:
            assert got[name] == _as_text(single[name]), (rank, name)
