"""Prediction throughput: the Predictor (what `visiontk <task> predict` runs) against its ceiling and a naive loop.

For each model and precision, in one process and interleaved round by round:
- forward: the Predictor's own model alone on one decoded, resized batch held
  in memory (same precision, memory format and threads);
- decode: the Predictor's decoding stage alone (same workers, no model);
- ceiling: on the CPU decoding and the model share the cores, so
  1 / (1/forward + 1/decode); with a GPU the stages overlap: min(forward, decode);
- output: the output stage alone on one batch's raw outputs: post-processing
  and writing records (and, for segmentation, a mask PNG per image at the
  image's size); "ceiling incl. output" is 1 / (1/ceiling + 1/output), the
  ceiling of a CPU that must also do this stage;
- predictor: `Predictor.run` over the folder, records written as JSON lines
  (to /dev/null);
- naive: PIL open, torchvision transforms, the model on one image at a time;
- CLI: `visiontk <task> predict FOLDER` as a subprocess, at its marginal rate
  (N images minus one batch, over the time difference; process start-up excluded).

Targets: predictor >= 0.9 x ceiling and >= 2 x naive at batch 32.

    python benchmarks/predict_bench.py [--models demo,resnet18] [--precisions fp32,bf16] [--rounds 3]
    python benchmarks/predict_bench.py --schedules auto,alternate,pipeline,processes --profile   # item 3: who feeds the model
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_utils as bu  # noqa: E402

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from visiontk.engine.performance import autocast  # noqa: E402
from visiontk.engine.predictor import Predictor  # noqa: E402
from visiontk.outputs.output_file import OutputFile  # noqa: E402
from visiontk.tasks.registry import get_task  # noqa: E402

# name -> (task, recipe, overrides, images per timed run)
MODELS = {
    "demo": ("classify", "classify/shapes", [], 1024),
    "resnet18": ("classify", "classify/shapes",
                 ["model.backbone=resnet18", "model.backbone_options={}", "data.image_size=224", "model.head.pool=avg"], 128),
    "detect-demo": ("detect", "detect/shapes", [], 512),
    "segment-demo": ("segment", "segment/shapes-fcn8s", [], 256),
}
# How the Predictor feeds the model: --loader (engine/decode_batches.py, engine/cpu_schedule.py).
SCHEDULES = {
    "auto": "auto",  # the default: on the CPU, taking turns or a pipeline, measured on the run's first batches
    "alternate": "threads",  # decoding threads take turns with the model on every core
    "pipeline": "pipeline",  # decoding threads ahead of the model, the model on the cores they leave
    "processes": "processes",  # DataLoader workers (the GPU default)
}


def task_options(task: str, tmp: Path) -> object:
    """The task's default predict options; segment's masks go to a temporary folder."""
    options = get_task(task).predict_options()
    return dataclasses.replace(options, out_dir=str(tmp / "masks")) if hasattr(options, "out_dir") else options


def checkpoint_for(name: str) -> Path:
    task, recipe, overrides, _ = MODELS[name]
    get_task(task)
    return bu.make_checkpoint(recipe, bu.CACHE / f"ckpt-{name}.pt", overrides)


class Bench:
    """One model at one precision: the contenders share the Predictor's model."""

    def __init__(self, name: str, precision: str, paths: list[Path], batch: int, workers: int, schedule: str, tmp: Path):
        self.name, self.precision, self.paths, self.batch, self.workers = name, precision, paths, batch, workers
        self.task_name = MODELS[name][0]
        self.ckpt = checkpoint_for(name)
        self.tmp = tmp
        options = task_options(self.task_name, tmp)
        self.predictor = Predictor(self.ckpt, self.task_name, device="cpu", batch_size=batch, workers=workers,
                                   options=options, precision=precision, loader=SCHEDULES[schedule])
        # What `predict` writes (records, and segment's mask PNGs), with stdout as the results stream.
        self.outputs = get_task(self.task_name).prediction_outputs(options, OutputFile(None))
        p = self.predictor
        pixels = [p.load_pixels(x) for x in paths[:batch]]
        # One batch's raw outputs and metas, for the output stage alone.
        with torch.inference_mode(), autocast(p.device, p.dtype):
            self.batch_outputs = p._forward([px for px, _ in pixels])
        self.batch_metas = [m for _, m in pixels]
        self.output_count = 0
        # Already normalised (as `Predictor.load` does it), and in the memory format
        # the model runs in: the model's best case.
        self.batch_tensor = torch.stack([p.preprocess.normalize(px) for px, _ in pixels])
        if p.channels_last:
            self.batch_tensor = self.batch_tensor.contiguous(memory_format=torch.channels_last)
        self.profile: dict[str, float] = {}
        self.naive_model = None

    # -- contenders -----------------------------------------------------------
    def forward(self) -> int:
        p = self.predictor
        n = max(1, len(self.paths) // self.batch)
        with torch.inference_mode(), autocast(p.device, p.dtype):
            for _ in range(n):
                p.model(self.batch_tensor)
        return n * self.batch

    def decode(self) -> int:
        """The decoding stage alone: the Predictor's decoding threads (or processes), one batch at a time."""
        p = self.predictor
        return sum(len(b) for b in p._batches(iter(self.paths)))

    def output(self) -> int:
        """The output stage alone: post-processing (box decoding + NMS, softmax +
        top-k, mask upsampling) and writing the records (and mask PNGs)."""
        p = self.predictor
        n = max(1, len(self.paths) // self.batch)
        with open(os.devnull, "w") as sink, torch.inference_mode():
            writer = self.outputs.writer(sink)
            for _ in range(n):
                metas = []
                for m in self.batch_metas:  # new names: mask files are never overwritten
                    self.output_count += 1
                    metas.append({**m, "path": f"{Path(m['path']).stem}-o{self.output_count}.jpg"})
                for record in p.task.postprocess(self.batch_outputs, metas, p.context):
                    writer(record)
        return n * self.batch

    def predictor_run(self) -> int:
        with open(os.devnull, "w") as sink:
            return self.predictor.run(iter(self.paths), self.outputs.writer(sink))["images"]

    def naive(self) -> int:
        """What a first script looks like: PIL, torchvision transforms, one image at a time."""
        from torchvision import transforms as T

        from visiontk.engine.build import model_from_checkpoint

        p = self.predictor
        if self.naive_model is None:
            self.naive_model = model_from_checkpoint(self.ckpt, self.task_name)[0]
        h, w = p.size
        tf = T.Compose([T.Resize((h, w)), T.ToTensor(), T.Normalize(p.ckpt["mean"], p.ckpt["std"])])
        n = len(self.paths) // 2  # the slowest contender: half the images, same rate
        with open(os.devnull, "w") as sink:
            writer = self.outputs.writer(sink)
            for path in self.paths[:n]:
                img = Image.open(path).convert(p.mode)
                with torch.no_grad(), autocast(p.device, p.dtype):
                    out = self.naive_model(tf(img)[None])
                out = out.float() if torch.is_tensor(out) else out
                for record in p.task.postprocess(out, [{"path": str(path), "orig_size": (img.height, img.width)}],
                                                 p.context):
                    writer(record)
        return n

    def cli(self) -> tuple[int, float]:
        """Marginal rate of the command: (N - batch) images over t(N) - t(batch)."""
        # 4x the images of the other contenders: the difference of two process
        # runs must stand well above the variation of the start-up time.
        paths_all = bu.make_jpegs(self.paths[0].parent, 4 * len(self.paths), size=(640, 480))
        folder_all, folder_one = self.tmp / f"cli-{self.name}-all", self.tmp / f"cli-{self.name}-one"
        for folder, paths in ((folder_all, paths_all), (folder_one, self.paths[:self.batch])):
            if not folder.exists():
                folder.mkdir()
                for p in paths:
                    (folder / p.name).symlink_to(p.resolve())
        times = []
        for folder in (folder_all, folder_one):
            cmd = [sys.executable, "-m", "visiontk", self.task_name, "predict", str(self.ckpt), str(folder),
                   "--device", "cpu", "--batch-size", str(self.batch), "--workers", str(self.workers),
                   "--precision", self.precision]
            if self.task_name == "segment":
                cmd += ["--out-dir", str(self.tmp / f"cli-masks-{time.monotonic_ns()}")]
            env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
            start = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
            times.append(time.perf_counter() - start)
        return len(paths_all) - self.batch, max(times[0] - times[1], 1e-9)

    # -- profile --------------------------------------------------------------
    @contextmanager
    def profiled(self):
        """Wall time of the main thread split into: waiting for decoded batches,
        the model (with the batch's normalisation), and the rest (handing the
        batch to the writing thread and waiting for it)."""
        p = self.predictor
        prof = {"wait_decode": 0.0, "forward": 0.0}
        task_forward, batches = p._forward, p._batches

        def timed_forward(*a, **k):
            t = time.perf_counter()
            out = task_forward(*a, **k)
            prof["forward"] += time.perf_counter() - t
            return out

        def timed_batches(*args):
            it = batches(*args)
            while True:
                t = time.perf_counter()
                try:
                    b = next(it)
                except StopIteration:
                    return
                finally:
                    prof["wait_decode"] += time.perf_counter() - t
                yield b

        p._forward, p._batches = timed_forward, timed_batches
        start = time.perf_counter()
        try:
            yield prof
        finally:
            prof["total"] = time.perf_counter() - start
            p._forward, p._batches = task_forward, batches


def run_model(name: str, precisions: list[str], args, tmp: Path) -> tuple[list[list], list[str]]:
    n = args.n or MODELS[name][3]
    paths = bu.make_jpegs(bu.CACHE / "jpeg640x480", max(n, args.batch), size=(640, 480))[:n]
    rows, notes = [], []
    for precision in precisions:
        bench = Bench(name, precision, paths, args.batch, args.workers, "auto", tmp)
        contenders = {"forward": bench.forward, "decode": bench.decode, "output": bench.output,
                      "predictor": bench.predictor_run, "naive": bench.naive}
        if args.cli:
            contenders["cli"] = bench.cli
        rates = bu.interleaved(contenders, args.rounds)
        ceiling = [1 / (1 / f + 1 / d) for f, d in zip(rates["forward"], rates["decode"])]
        # The same with the output stage as a third one on the same cores.
        ceiling3 = [1 / (1 / c + 1 / o) for c, o in zip(ceiling, rates["output"])]
        row = [name, f"{bench.predictor.size[0]}x{bench.predictor.size[1]}", precision,
               f"{bu.median(rates['forward']):.0f}", f"{bu.median(rates['decode']):.0f}", f"{bu.median(ceiling):.0f}",
               f"{bu.median(rates['output']):.0f}", f"{bu.median(rates['predictor']):.0f}",
               f"{bu.median(rates['naive']):.1f}",
               bu.fmt_ratio(bu.ratio_stats(rates["predictor"], ceiling), 0.9),
               bu.fmt_ratio(bu.ratio_stats(rates["predictor"], ceiling3)),
               bu.fmt_ratio(bu.ratio_stats(rates["predictor"], rates["naive"]), 2.0)]
        row.append(bu.fmt_ratio(bu.ratio_stats(rates["cli"], ceiling)) if args.cli else "-")
        rows.append(row)
        notes.append(f"{name} {precision}: the predictor's last run: {ran_as(bench)}")
        print(f"  {name} {precision}: " + ", ".join(f"{k} {bu.median(v):.1f}" for k, v in rates.items()), file=sys.stderr)
    return rows, notes


def run_schedules(name: str, precision: str, args, tmp: Path) -> list[list]:
    """Item 3: the same pipeline fed by threads taking turns with the model, by
    threads decoding ahead beside it, and by DataLoader worker processes."""
    n = args.n or MODELS[name][3]
    paths = bu.make_jpegs(bu.CACHE / "jpeg640x480", max(n, args.batch), size=(640, 480))[:n]
    benches = {s: Bench(name, precision, paths, args.batch, args.workers, s, tmp) for s in args.schedules}
    ref = benches[args.schedules[0]]
    contenders = {"forward": ref.forward}
    for s, b in benches.items():
        contenders[f"decode:{s}"] = b.decode
        contenders[f"predictor:{s}"] = b.predictor_run
    rates = bu.interleaved(contenders, args.rounds)
    rows = []
    for s, b in benches.items():
        ceiling = [1 / (1 / f + 1 / d) for f, d in zip(rates["forward"], rates[f"decode:{s}"])]
        with b.profiled() as prof:
            b.predictor_run()
        t = prof["total"]
        rows.append([name, precision, s, f"{bu.median(rates['forward']):.0f}", f"{bu.median(rates[f'decode:{s}']):.0f}",
                     f"{bu.median(ceiling):.0f}", f"{bu.median(rates[f'predictor:{s}']):.0f}",
                     bu.fmt_ratio(bu.ratio_stats(rates[f"predictor:{s}"], ceiling), 0.9),
                     f"{prof['wait_decode'] / t:.0%} / {prof['forward'] / t:.0%} / "
                     f"{(t - prof['wait_decode'] - prof['forward']) / t:.0%}", ran_as(b)])
    return rows


PREDICT_HEADERS = ["model", "input", "precision", "forward img/s", "decode img/s", "ceiling img/s", "output img/s",
                   "predictor img/s", "naive img/s", "predictor / ceiling", "predictor / ceiling incl. output",
                   "predictor / naive", "CLI / ceiling"]
SCHEDULE_HEADERS = ["model", "precision", "schedule", "forward img/s", "decode img/s", "ceiling img/s", "predictor img/s",
                    "predictor / ceiling", "main thread: wait decode / forward / rest", "ran as (last run)"]


def ran_as(bench: Bench) -> str:
    """How the Predictor's last run fed the model (auto: what it measured and chose)."""
    schedule = bench.predictor.schedule
    return schedule.describe() if schedule is not None else f"{bench.predictor.workers} decoding processes"


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="demo,resnet18", help=f"comma-separated: {', '.join(MODELS)}")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--n", type=int, default=0, help="images per timed run (default per model)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's, the core count)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cli", action="store_true", help="also time the command line (a subprocess per run)")
    ap.add_argument("--schedules", default="", help="compare feeding schedules instead: auto,alternate,pipeline,processes")
    ap.add_argument("--profile", action="store_true", help="(with --schedules) main-thread time split")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m for m in args.models.split(",") if m]
    precisions = [p for p in args.precisions.split(",") if p]
    import tempfile

    out = [f"### Prediction, batch {args.batch}, {args.workers} decoding workers, 640x480 JPEGs\n", bu.environment(), ""]
    with tempfile.TemporaryDirectory(prefix="vtk-bench-") as tmp:
        if args.schedules:
            args.schedules = [s for s in args.schedules.split(",") if s]
            rows = []
            for m in models:
                for p in precisions:
                    rows += run_schedules(m, p, args, Path(tmp))
            out.append(bu.markdown_table(SCHEDULE_HEADERS, rows))
        else:
            rows, notes = [], []
            for m in models:
                model_rows, model_notes = run_model(m, precisions, args, Path(tmp))
                rows += model_rows
                notes += model_notes
            out.append(bu.markdown_table(PREDICT_HEADERS, rows))
            out += ["", *(f"- {n}" for n in notes)]
    out.append(f"\nmedian over {args.rounds} interleaved rounds (range in brackets); load average at end {bu.load_average()}")
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
