"""Data throughput per worker: decode + resize + augment images/s, for each resize rule and against torchvision.

One thread (torch and OpenCV), as in one DataLoader worker or one decoding
thread. Every pipeline ends in the same place: a normalised CHW float tensor
at the target size, horizontally flipped with p = 0.5. Rows are measured
interleaved, round by round, and compared with visiontk's default
preprocessing (data/preprocess.py: what training, eval and predict all run).

The visiontk rows are `Preprocess` with each resize rule, with and without
JPEG draft decoding: when the target is much smaller than the photo, libjpeg
decodes at 1/2, 1/4 or 1/8 scale (PIL's `draft`), which skips most of the
IDCT and colour conversion work and memory (the 12 MP rows).

    python benchmarks/data_bench.py [--rounds 3] [--sizes 640x480:224,640x480:64,4000x3000:224]
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_utils as bu  # noqa: E402

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from visiontk.data.preprocess import RESIZE_RULES, Preprocess  # noqa: E402

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
REFERENCE = "visiontk default"


def visiontk_pipelines(target: int) -> dict:
    """The default Preprocess, then every rule x draft on/off."""
    flip = A.HorizontalFlip(p=0.5)
    default = Preprocess(size=(target, target), mean=MEAN, std=STD)

    def run(pre: Preprocess):
        def fn(path):
            image, _ = pre.decode(path)
            return pre.normalize(pre.finish(flip(image=image)["image"]))
        return fn

    out = {f"{REFERENCE} ({default.resize}, draft {'on' if default.jpeg_draft else 'off'})": run(default)}
    for rule in RESIZE_RULES:
        for draft in (True, False):
            pre = replace(default, resize=rule, jpeg_draft=draft)
            if pre != default:
                out[f"visiontk {rule}, draft {'on' if draft else 'off'}"] = run(pre)
    return out


def pipelines(target: int) -> dict:
    from torchvision import io as tvio
    from torchvision import transforms as T
    from torchvision.transforms import v2

    size = (target, target)
    tv2 = v2.Compose([v2.RandomHorizontalFlip(), v2.Resize(size, antialias=True), v2.ToDtype(torch.float32, scale=True),
                      v2.Normalize(MEAN, STD)])
    tv1 = T.Compose([T.RandomHorizontalFlip(), T.Resize(size), T.ToTensor(), T.Normalize(MEAN, STD)])

    def torchvision_io(path):
        return tv2(tvio.decode_jpeg(tvio.read_file(str(path)), mode=tvio.ImageReadMode.RGB))

    def pil_torchvision(path):
        return tv1(Image.open(path).convert("RGB"))

    return {
        **visiontk_pipelines(target),
        "torchvision.io decode_jpeg + transforms.v2": torchvision_io,
        "PIL + torchvision transforms (no draft)": pil_torchvision,
    }


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="640x480:224,640x480:64,4000x3000:224",
                    help="comma-separated WxH:TARGET (JPEG size : square target side)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rows = []
    for spec in args.sizes.split(","):
        src, target = spec.split(":")
        w, h = (int(v) for v in src.split("x"))
        target = int(target)
        big = w * h > 4_000_000
        n = 12 if big else 200
        paths = bu.make_jpegs(bu.CACHE / f"jpeg{w}x{h}", n, size=(w, h), distinct=4 if big else 16)
        fns = pipelines(target)
        contenders = {name: (lambda fn=fn: sum(1 for p in paths if fn(p) is not None)) for name, fn in fns.items()}
        rates = bu.interleaved(contenders, args.rounds)
        ref = next(v for k, v in rates.items() if k.startswith(REFERENCE))
        for name in fns:
            rows.append([f"{w}x{h}", target, name.strip(), f"{bu.median(rates[name]):.1f}",
                         bu.fmt_ratio(bu.ratio_stats(rates[name], ref))])
        print(f"  {spec}: " + ", ".join(f"{k.strip()} {bu.median(v):.1f}" for k, v in rates.items()), file=sys.stderr)
    text = "\n".join([
        "### Data: decode + resize + flip + normalise, images/s per worker (1 thread)\n", bu.environment(), "",
        bu.markdown_table(["JPEG", "target", "pipeline", "img/s per worker", "vs visiontk default"], rows),
        f"\nmedian over {args.rounds} interleaved rounds (range in brackets); load average at end {bu.load_average()}",
    ])
    print(text)
    return text


if __name__ == "__main__":
    main()
