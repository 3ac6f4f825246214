"""Segmentation throughput: images/s for training and prediction, FCN-8s and U-Net.

Training: the shared Trainer against a plain PyTorch loop (same model, same
data set and loader, AdamW and cross-entropy). The Trainer, unchanged, runs
its own fit() and times its own epochs; in each of them a plain-loop epoch
takes turns with it step by step (step_interleave.py), so both loops run in
the same seconds of the machine: its speed drifts by +-13% from second to
second on this shared VM, and whole epochs side by side spread 0.79-1.15
(runs seconds apart) and 0.98-1.10 (adjacent epochs). The first epoch of
each is a warm-up; a round's ratio is its measured Trainer epochs' mean rate
over its plain epochs', ours/plain the median of the rounds' ratios, with
their range.
The plain loop uses torch's default AdamW (the per-tensor loop on the CPU) and
F.cross_entropy; the Trainer its own optimizer (engine/optim.py: fused
kernel, no decay on biases and norms) and the task's loss (which also makes
an all-ignored batch's loss 0 instead of NaN). Prediction: the
shared Predictor end to end (decode, resize, forward, mask PNG written) and
the bare model forward on ready tensors.

    python benchmarks/segment_bench.py [--size 128] [--n 200] [--epochs 3] [--rounds 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from statistics import median

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from visiontk.data.synth import synth_segment  # noqa: E402
from visiontk.engine.build import build_model  # noqa: E402
from visiontk.engine.predictor import Predictor  # noqa: E402
from visiontk.tasks.recipes import recipe_from_dict  # noqa: E402
from visiontk.tasks.registry import get_task  # noqa: E402
from visiontk.outputs.output_file import OutputFile  # noqa: E402
from visiontk.tasks.options.segment import SegmentPredictOptions  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_interleave import StepBySide  # noqa: E402

DECODERS = ("fcn8s", "unet")


def make_recipe(decoder: str, root: Path, size: int, epochs: int, batch: int):
    return recipe_from_dict({
        "task": "segment", "name": f"bench-{decoder}",
        "model": {"backbone": "tinycnn", "backbone_options": {"width": 8}, "head": {"decoder": decoder}},
        "data": {"format": "masks", "root": str(root), "image_size": size, "mean": [0.5] * 3, "std": [0.25] * 3},
        "train": {"epochs": epochs, "batch_size": batch, "optimizer": "adamw", "lr": 0.003, "schedule": "none",
                  "seed": 0},
        "output": {"plots": False},
    })


class PlainLoop:
    """The same model, data and optimizer in the textbook loop."""

    def __init__(self, recipe):
        task = get_task("segment")
        dataset, classes = task.build_dataset(recipe, "train", train=True)
        self.loader = DataLoader(dataset, batch_size=recipe.train.batch_size, shuffle=True)
        torch.manual_seed(0)
        self.model = build_model(recipe, len(classes)).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=recipe.train.lr,
                                           weight_decay=recipe.train.weight_decay)

    def steps(self) -> Iterator[int]:
        """One epoch; each next() runs one step (its batch fetched inside) and gives its image count."""
        for images, masks in self.loader:
            loss = torch.nn.functional.cross_entropy(self.model(images), masks, ignore_index=255)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            yield images.shape[0]


def train_round(recipe, project: Path) -> tuple[float, float]:
    """(ours, plain) images/s: means over the epochs after the first (a warm-up) of one Trainer
    run, each taking turns step by step with a plain-loop epoch (one plain loop, trained on)."""
    plain = PlainLoop(recipe)
    trainer = StepBySide(recipe, plain.steps, device="cpu", project=str(project))
    trainer.fit()
    measured = trainer.pairs[1:] or trainer.pairs
    return (sum(o for o, _ in measured) / len(measured), sum(p for _, p in measured) / len(measured))


def predict_rates(checkpoint: Path, images: list[Path], out_dir: Path, batch: int) -> tuple[float, float]:
    options = SegmentPredictOptions(out_dir=str(out_dir))
    predictor = Predictor(checkpoint, "segment", device="cpu", batch_size=batch, workers=2, options=options)
    outputs = get_task("segment").prediction_outputs(options, OutputFile(None))  # mask PNGs, as `predict` writes them
    start = time.perf_counter()
    with open(os.devnull, "w") as sink:
        predictor.run(images, outputs.writer(sink))
    end_to_end = len(images) / (time.perf_counter() - start)
    tensors = [predictor.load(p)[0] for p in images]
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(tensors), batch):
            predictor.model(torch.stack(tensors[i:i + batch]))
    forward_only = len(images) / (time.perf_counter() - start)
    return end_to_end, forward_only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3, help="per measurement; the first is a warm-up")
    parser.add_argument("--rounds", type=int, default=5, help="Trainer runs, each epoch taking turns step by step with a plain-loop epoch")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "shapes"
        synth_segment(root, n=args.n, size=args.size, seed=0)
        val_images = sorted((root / "val" / "images").glob("*.png"))
        rows = []
        for decoder in DECODERS:
            recipe = make_recipe(decoder, root, args.size, args.epochs, args.batch)
            ours, plain = [], []
            for _ in range(args.rounds):
                o, p = train_round(recipe, tmp / "runs")
                ours.append(o)
                plain.append(p)
            ratios = [o / p for o, p in zip(ours, plain)]
            ckpt = next((tmp / "runs" / "segment").glob(f"bench-{decoder}*/best.pt"))
            e2e, fwd = predict_rates(ckpt, val_images, tmp / f"pred-{decoder}", args.batch)
            rows.append((decoder, median(ours), median(plain), ratios, e2e, fwd))

    print(f"segmentation throughput, {args.size} px, batch {args.batch}, {args.threads} threads, CPU (images/s); "
          f"train: medians of {args.rounds} rounds of epochs taking turns step by step (range of ours/plain in brackets)")
    header = (f"{'decoder':8} {'train ours':>11} {'train plain':>12} {'ours/plain':>11} {'(range)':>11} "
              f"{'predict e2e':>12} {'forward':>9}")
    print(header)
    print("-" * len(header))
    for decoder, ours_rate, plain_rate, ratios, e2e, fwd in rows:
        spread = f"({min(ratios):.2f}-{max(ratios):.2f})"
        print(f"{decoder:8} {ours_rate:11.1f} {plain_rate:12.1f} {median(ratios):11.2f} {spread:>11} {e2e:12.1f} {fwd:9.1f}")


if __name__ == "__main__":
    main()
