"""fp32 against bf16 (and channels_last) on the trained classification demo: top-1 agreement and accuracy.

Trains the demo recipe (classify/shapes) once into the benchmark cache, then
predicts its validation split with the Predictor at each setting and compares
the top-1 labels with the fp32 ones and with the true classes.

    python benchmarks/precision_bench.py [--checkpoint best.pt --data DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_utils as bu  # noqa: E402

from visiontk.data.sources import iter_sources  # noqa: E402
from visiontk.engine.predictor import Predictor  # noqa: E402

SETTINGS = {  # name -> Predictor keyword arguments
    "fp32": dict(precision="fp32", channels_last=False),
    "fp32 channels_last": dict(precision="fp32", channels_last=True),
    "bf16": dict(precision="bf16", channels_last=False),
    "bf16 channels_last": dict(precision="bf16", channels_last=True),
}


def trained_demo() -> tuple[Path, Path]:
    """(best.pt, data root) of the demo recipe trained with its own settings."""
    from visiontk.engine.trainer import Trainer
    from visiontk.tasks.recipes import load_recipe

    root = bu.CACHE / "shapes-classify-demo"
    run = bu.CACHE / "runs" / "classify" / "demo"
    if not (run / "best.pt").exists():
        recipe = load_recipe("classify/shapes", [f"data.root={root}", "output.plots=false"])
        Trainer(recipe, device="cpu", project=str(bu.CACHE / "runs"), name="demo").fit()
    return run / "best.pt", root


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="a classify checkpoint (default: the demo, trained on first use)")
    ap.add_argument("--data", help="ImageFolder split to predict (default: the demo's val split)")
    args = ap.parse_args(argv)
    if args.checkpoint:
        ckpt, split = Path(args.checkpoint), Path(args.data)
    else:
        ckpt, root = trained_demo()
        split = root / "val"
    paths = list(iter_sources([str(split)]))
    truth = {str(p): p.parent.name for p in paths}
    labels: dict[str, dict[str, str]] = {}
    for name, kw in SETTINGS.items():
        records: list[dict] = []
        Predictor(ckpt, "classify", device="cpu", **kw).run(paths, records.append)
        labels[name] = {r["path"]: r["label"] for r in records}
    ref = labels["fp32"]
    rows = []
    for name, got in labels.items():
        agree = sum(got[p] == ref[p] for p in ref) / len(ref)
        top1 = sum(got[p] == truth[p] for p in got) / len(got)
        rows.append([name, f"{len(got)}", f"{agree:.2%}", f"{top1:.2%}"])
    text = "\n".join([
        f"### Precision: top-1 agreement with fp32 on the classify demo ({ckpt.name}, {len(paths)} val images)\n",
        bu.environment(), "",
        bu.markdown_table(["setting", "images", "top-1 = fp32's", "top-1 accuracy"], rows),
    ])
    print(text)
    return text


if __name__ == "__main__":
    main()
