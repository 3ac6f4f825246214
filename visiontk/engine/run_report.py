"""The run report: one self-contained `report.html` in every run directory.

The page is a function of the run directory's files alone, so `visiontk report
RUN_DIR` rebuilds exactly what training wrote:

- recipe.yaml (resolved), results.csv (curves, learning rate, epoch times);
- run_info.json: data summary, hardware and precision, per-epoch timings, progress;
- val_metrics.json: the last validation's full metrics (confusion matrix, PR
  curves, per-class IoU: what results.csv's scalars leave out);
- plots/val_samples.png, plots/worst_classified.png: validation images with the
  predictions drawn against the truth (made by the trainer, which has the model).

Cost per epoch: the page, its curves and bars inline SVG and its confusion matrix
a shaded table (20-60 ms; as matplotlib PNGs they took ~0.5 s). The sample grids
need a forward pass over validation images (all of them, up to 5000, for the
worst classified), so they are drawn only every SAMPLES_EVERY epochs and at the
end. And the page is rewritten after an epoch only when training has run at least
REPORT_BUDGET times as long as the last write took: on a tiny run whose epochs
last a second the report costs at most ~1/REPORT_BUDGET of the time, on a real run
(minutes per epoch) it is rewritten after every epoch. The last epoch always writes.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

from visiontk import __version__
from visiontk.console import plural
from visiontk.data.modality import input_noun, modality_name
from visiontk.engine.checkpoint import atomic_write_bytes, atomic_write_text
from visiontk.errors import UserError
from visiontk.outputs.json_text import dumps
from visiontk.viz.report_html import Charts, Figure, PageSection, Table, Text, render_page
from visiontk.viz.svg_charts import line_chart

REPORT = "report.html"
RUN_INFO = "run_info.json"
VAL_METRICS = "val_metrics.json"
SAMPLES_EVERY = 5
REPORT_BUDGET = 5.0
# The trainer's sample figures (Task.report_samples) in plots/, with their headings.
SAMPLE_FIGURES = {
    "val_samples.png": ("Validation samples", "Predictions drawn against the ground truth (green: prediction or "
                                              "correct, red: wrong, orange dashed: true boxes; masks tinted by "
                                              "class), at the model's input size."),
    "worst_classified.png": ("Worst-classified validation images", "Lowest probability given to the true class "
                                                                    "first."),
}


# -- what the trainer records -------------------------------------------------
def hardware(device: torch.device, dtype: torch.dtype | None, channels_last: bool, compiled: bool, world: int) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {
        "device": str(device),
        "processes": world,
        "precision": {torch.bfloat16: "bf16 (autocast)", torch.float16: "fp16 (autocast, grad scaler)"}.get(dtype, "fp32"),
        "channels_last": channels_last,
        "torch.compile": compiled,
        "cpu": cpu,
        "cpu cores usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "visiontk": __version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def data_summary(recipe, train_ds, val_ds, classes: list[str]) -> dict:
    d = recipe.data
    noun = input_noun(modality_name(d.format))  # "image", "signal", "text"
    return {
        "format": d.format,
        "root": str(d.root),
        "train split": f"{d.train}: {plural(len(train_ds), noun)}",
        "val split": f"{d.val}: {plural(len(val_ds), noun)}",
        "image size (h, w)": list(recipe.image_size),
        "channels": recipe.model.in_channels,
        "mean / std": f"{list(d.mean) if d.mean else 'the weights'} / {list(d.std) if d.std else 'the weights'}",
        "augmentations": ", ".join(next(iter(a)) if isinstance(a, dict) else str(a)
                                   for a in (recipe.to_dict()["data"].get("augment") or [])) or "none",
        "classes": len(classes),
        "class names": list(classes),
    }


class RunReporter:
    """Writes run_info.json, val_metrics.json, the sample figures and report.html for the trainer."""

    def __init__(self, run_dir: Path, info: dict):
        self.run_dir = run_dir
        old = _read_json(run_dir / RUN_INFO) or {}  # a resumed run keeps the timings of its first part
        self.info = {**info, "timing": old.get("timing", []), "started": old.get("started", _now())}
        self.next_write = 0.0  # time.monotonic() before which a per-epoch rewrite is skipped

    def epoch_done(self, epoch: int, epochs: int, val_seconds: float | None, metrics: dict | None,
                   best: tuple[int, float], final: bool, samples) -> None:
        """`samples`: a callable returning {file name: PNG} (the task's report_samples)."""
        start = time.monotonic()
        self.info["timing"] = [t for t in self.info["timing"] if t["epoch"] < epoch]
        self.info["timing"].append({"epoch": epoch, "val_s": None if val_seconds is None else round(val_seconds, 3)})
        self.info["progress"] = {"epochs_done": epoch, "epochs": epochs, "best_epoch": best[0],
                                 "best_fitness": best[1], "updated": _now(), "finished": final}
        atomic_write_text(dumps(self.info, indent=1), self.run_dir / RUN_INFO)
        if metrics:
            atomic_write_text(dumps({"epoch": epoch, "metrics": metrics}), self.run_dir / VAL_METRICS)
        if not final and start < self.next_write:
            return
        if final or epoch % SAMPLES_EVERY == 0:
            for name, png in samples().items():
                atomic_write_bytes(png, self.run_dir / "plots" / name)
        write_report(self.run_dir)
        cost = time.monotonic() - start
        self.info["timing"][-1]["report_s"] = round(cost, 3)
        atomic_write_text(dumps(self.info, indent=1), self.run_dir / RUN_INFO)
        self.next_write = time.monotonic() + REPORT_BUDGET * cost


# -- the page -------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text or None


def read_results(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _curves(rows: list[dict], keys: list[str]) -> list[str]:
    """One chart per results.csv column, against epoch (epochs without the value skipped)."""
    return [line_chart({key: [(r["epoch"], r[key]) for r in rows
                              if isinstance(r.get(key), (int, float)) and isinstance(r.get("epoch"), (int, float))]},
                       key) for key in keys]


def _key_values(d: dict) -> Table:
    return Table(["", "value"], [[k, ", ".join(map(str, v)) if isinstance(v, list) else v] for k, v in d.items()])


def build_report(run_dir: str | Path) -> str:
    """The HTML of a run directory's report (a UserError when it is not a run directory)."""
    from visiontk.tasks.registry import get_task, task_names

    run_dir = Path(run_dir)
    recipe_path = run_dir / "recipe.yaml"
    if not recipe_path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no recipe.yaml)")
    recipe_text = recipe_path.read_text(encoding="utf-8", errors="replace")
    try:
        recipe = yaml.safe_load(recipe_text)
    except yaml.YAMLError as e:
        raise UserError(f"{recipe_path}: not valid YAML ({str(e).splitlines()[0]})") from None
    task_name = recipe.get("task") if isinstance(recipe, dict) else None
    if task_name not in task_names():
        raise UserError(f"{recipe_path}: task {task_name!r} is not one of {', '.join(task_names())}")
    task = get_task(task_name)
    rows = read_results(run_dir / "results.csv")
    info = _read_json(run_dir / RUN_INFO) or {}
    val = _read_json(run_dir / VAL_METRICS) or {}
    progress = info.get("progress", {})

    sections: list[PageSection] = []
    summary = {"task": task_name, "run": recipe.get("name"), "run directory": str(run_dir.resolve()),
               "epochs done": f"{progress.get('epochs_done', len(rows))} of {progress.get('epochs', '?')}"
                              + ("" if progress.get("finished") else " (running or stopped)"),
               "best epoch": progress.get("best_epoch"), "best fitness": progress.get("best_fitness"),
               "started": info.get("started"), "updated": progress.get("updated")}
    sections.append(PageSection("Summary", [_key_values(summary)]))
    sections.append(PageSection("Recipe (resolved)", [Text(recipe_text, pre=True)]))
    data = info.get("data")
    sections.append(PageSection("Data", [_key_values(data) if data else Text("not recorded (run_info.json missing)")]))

    loss_keys = [k for k in (rows[0] if rows else {}) if k.startswith("train/") and k != "train/img_per_s"]
    metric_keys = [k for k in (rows[0] if rows else {}) if k.startswith("val/")]
    if rows:
        sections.append(PageSection("Loss curves", [Charts(_curves(rows, loss_keys), "mean over each epoch's batches")]))
        if metric_keys:
            sections.append(PageSection("Metric curves", [Charts(_curves(rows, metric_keys),
                                                                 "validation after each evaluated epoch")]))
        if any("lr" in r for r in rows):
            sections.append(PageSection("Learning rate", [Charts(_curves(rows, ["lr"]),
                                                                 "first parameter group, at the end of each epoch")]))
    else:
        sections.append(PageSection("Loss curves", [Text("no epoch finished yet")]))

    metrics, classes = val.get("metrics"), (data or {}).get("class names") or recipe.get("data", {}).get("classes")
    if metrics and classes:
        report = task.report(metrics, list(classes))
        blocks: list = [Table(list(report.summary), [list(report.summary.values())], report.title)]
        if report.per_class:
            blocks.append(Table(list(report.per_class[0]), [list(r.values()) for r in report.per_class], "per class"))
        sections.append(PageSection(f"Validation metrics (epoch {val.get('epoch')})", blocks))
        sections += task.report_sections(metrics, list(classes))
    for name, (heading, caption) in SAMPLE_FIGURES.items():
        path = run_dir / "plots" / name
        if path.is_file():
            sections.append(PageSection(heading, [Figure(path.read_bytes(), heading.lower(), caption)]))

    timing = {t["epoch"]: t for t in info.get("timing", [])}
    table = [[r.get("epoch"), r.get("time"), r.get("train/img_per_s"), timing.get(r.get("epoch"), {}).get("val_s"),
              timing.get(r.get("epoch"), {}).get("report_s")] for r in rows]
    total = sum(r.get("time") or 0 for r in rows) + sum(t.get("val_s") or 0 for t in timing.values())
    sections.append(PageSection("Timing and throughput", [
        Text(f"{plural(len(rows), 'epoch')}, {total:.1f} s of training and validation"),
        Table(["epoch", "train s", "train images/s", "val s", "report s"], table)]))
    hw = info.get("hardware")
    sections.append(PageSection("Hardware and precision", [_key_values(hw) if hw else Text("not recorded")]))
    title = f"visiontk run report: {task_name} {recipe.get('name', '')}"
    return render_page(title, f"{run_dir.resolve()}; written {_now()}", sections)


def write_report(run_dir: str | Path) -> Path:
    """Write (atomically: a browser never reads half a page) run_dir/report.html."""
    path = Path(run_dir) / REPORT
    atomic_write_text(build_report(run_dir), path)
    return path
