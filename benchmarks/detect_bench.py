"""Detection throughput on the synthetic shapes set (the detect/shapes recipe's model and data).

Prints one table:
* train images/s: visiontk's Trainer epoch loop vs. a plain PyTorch loop over
  the same model, data (augmentation included), collate and loss (target
  encoding included). Each round runs one Trainer epoch (the Trainer
  unchanged, timing its own epoch) and one plain-loop epoch taking turns step
  by step inside the same fit() (step_interleave.py: the machine's speed
  drifts by +-13% from second to second, so whole epochs side by side, even
  adjacent ones, spread 0.72-1.20 on an idle machine). A plain epoch before
  the rounds warms the process and is not counted. The ratio is the median
  of the rounds' ratios, with their range. The plain loop uses torch's
  default SGD (the per-tensor loop on the CPU); the Trainer its own optimizer
  (engine/optim.py: fused kernel, nesterov, no decay on biases and norms);
* predict images/s through the streaming Predictor (decode PNG, resize,
  forward, decode + NMS, write jsonl to a null stream), and the share of that
  wall time spent in the forward pass and in decode + NMS (timed around the
  calls inside the same run).

    python benchmarks/detect_bench.py [--train-rounds 7] [--repeats 3] [--threads 1] [--checkpoint runs/detect/shapes/best.pt]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_interleave import StepBySide  # noqa: E402


class PlainLoop:
    """A hand-written loop on the same pieces: the data set (augmentation included), collate,
    model and loss (target encoding included), torch's SGD and a warm-up schedule."""

    def __init__(self, recipe, task, seed: int) -> None:
        from torch.utils.data import DataLoader

        from visiontk.engine.build import build_model

        torch.manual_seed(seed)
        dataset, classes = task.build_dataset(recipe, "train", train=True)
        self.loader = DataLoader(dataset, batch_size=recipe.train.batch_size, shuffle=True, collate_fn=task.collate)
        self.model = build_model(recipe, len(classes))
        self.loss_fn = task.build_loss(recipe, len(classes))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=recipe.train.lr, momentum=recipe.train.momentum,
                                   weight_decay=recipe.train.weight_decay)
        warmup = max(recipe.train.warmup_iters, 1)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda it: min(1.0, (it + 1) / warmup))
        self.model.train()

    def steps(self) -> Iterator[int]:
        """One epoch; each next() runs one step (its batch fetched inside) and gives its image count."""
        for images, targets in self.loader:
            loss, _ = self.loss_fn(self.model(images), targets)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
            yield images.shape[0]


def plain_epoch(recipe, task, seed: int) -> float:
    """One epoch of the plain loop alone; images/s."""
    loop = PlainLoop(recipe, task, seed)
    start = time.perf_counter()
    n = sum(loop.steps())
    return n / (time.perf_counter() - start)


def step_by_side(recipe, task, project: Path, seed: int) -> tuple[float, float]:
    """(ours, plain) images/s of one Trainer epoch (the Trainer unchanged; eval and
    checkpoints excluded) taking turns step by step with the plain loop's epoch."""
    r = recipe.model_copy(update={"train": recipe.train.model_copy(update={"epochs": 1, "seed": seed}),
                                  "output": recipe.output.model_copy(update={"plots": False})})
    trainer = StepBySide(r, lambda: PlainLoop(recipe, task, seed).steps(), device="cpu", project=str(project),
                         name=f"bench-{seed}")
    trainer.fit()
    return trainer.pairs[-1]


class Timed:
    """Wraps a callable and sums the seconds spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        return out


def predict_run(checkpoint: Path, paths: list[Path], batch_size: int) -> dict:
    import visiontk.tasks.detect.task as detect_task
    from visiontk.engine.predictor import Predictor
    from visiontk.outputs.records import JsonlWriter

    predictor = Predictor(checkpoint, "detect", device="cpu", batch_size=batch_size, workers=2)
    forward = Timed(predictor.model.forward)
    predictor.model.forward = forward
    decode = Timed(detect_task.decode_batch)  # what postprocess calls: decode + NMS of a batch
    detect_task.decode_batch = decode
    try:
        start = time.perf_counter()
        stats = predictor.run(paths, JsonlWriter(io.StringIO()))
        total = time.perf_counter() - start
    finally:
        detect_task.decode_batch = decode.fn
    return {"img_s": stats["images"] / total, "forward": forward.seconds / total, "decode": decode.seconds / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 7: taking turns step by step, 7 rounds gave 1.03 (1.01-1.03); whole epochs side by side
    # needed 15 and still spread 0.72-1.20.
    parser.add_argument("--train-rounds", type=int, default=7,
                        help="rounds of one Trainer epoch and one plain-loop epoch taking turns step by step")
    parser.add_argument("--repeats", type=int, default=3, help="predict runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared machine)")
    parser.add_argument("--batch-size", type=int, default=32, help="predict batch size")
    parser.add_argument("--data", type=Path, default=None, help="a synth_detect folder (default: generated in a temp dir)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a trained detect/shapes checkpoint for predict (default: the 1-epoch one from the train "
                             "runs, which keeps fewer boxes above the 0.25 threshold, so NMS has less to do)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from visiontk.console import err_console
    from visiontk.data.synth import synth_detect
    from visiontk.tasks.recipes import load_recipe
    from visiontk.tasks.registry import get_task

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data or tmp / "shapes"
        if args.data is None:
            synth_detect(data, n=400, size=128, seed=0)
        recipe = load_recipe("detect/shapes", [f"data.root={data}"])
        task = get_task("detect")
        err_console.quiet = True  # keep the trainer's progress out of the table
        ours, plain = [], []
        # Not counted: the process's first epoch may pay one-time costs (oneDNN kernels for these
        # shapes, the allocator's growth), which would fall on the Trainer alone (round 0 runs it first).
        plain_epoch(recipe, task, seed=args.train_rounds)
        for i in range(args.train_rounds):
            # Step by step in turn within one fit() (step_interleave.py).
            o, p = step_by_side(recipe, task, tmp / "runs", seed=i)
            ours.append(o)
            plain.append(p)
        ratios = [o / p for o, p in zip(ours, plain)]
        checkpoint = args.checkpoint or tmp / "runs" / "detect" / "bench-0" / "last.pt"
        paths = sorted((data / "images" / "val").glob("*.png")) * 4
        predicted = [predict_run(checkpoint, paths, args.batch_size) for _ in range(args.repeats)]
        err_console.quiet = False

    med = statistics.median
    table = Table(title=f"detect/shapes (128 px, YOLO-v1 S=8 B=2, tinycnn w8), {args.threads} thread(s), "
                        f"medians (range of the train ratio in brackets)", show_header=True)
    for col in ("measure", "visiontk", "plain PyTorch", "ratio"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    table.add_row(f"train images/s (epoch loop, {args.train_rounds} rounds)", f"{med(ours):.1f}", f"{med(plain):.1f}",
                  f"{med(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    table.add_row(f"predict images/s ({len(paths)} PNG, batch {args.batch_size})", f"{med(p['img_s'] for p in predicted):.1f}", "", "")
    table.add_row("  share of predict time in forward", f"{med(p['forward'] for p in predicted):.1%}", "", "")
    table.add_row("  share of predict time in decode + NMS", f"{med(p['decode'] for p in predicted):.1%}", "", "")
    Console(file=sys.stdout).print(table)


if __name__ == "__main__":
    main()
