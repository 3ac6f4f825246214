"""The one training loop every task uses.

Resume is exact at epoch boundaries: every RNG (python, numpy, torch, the
sampler's generator, worker seeds) is re-seeded from (seed, epoch) at the start
of each epoch, and the optimizer, scheduler and scaler states and early
stopping's counter travel in `last.pt`. The epoch history travels there too,
and results.csv is rewritten from it, so a killed and resumed run never has
duplicated or missing rows.
"""
from __future__ import annotations

import copy
import os
import csv
import io
import math
import socket
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from visiontk import __version__
from visiontk.console import info, plural, warn
from visiontk.data.modality import input_noun, modality_name
from visiontk.engine.build import build_model, check_weights_fit, checkpoint_meta, count_parameters, state_dict_fp32, unwrap
from visiontk.engine.checkpoint import FORMAT, VERSION, atomic_save, atomic_write_text, load_checkpoint, weights_sha256
from visiontk.backbones.normalization import pin_normalization
from visiontk.backbones.pretrained import pretrained_file
from visiontk.engine import distributed
from visiontk.engine.device import amp_dtype, describe_precision
from visiontk.engine.evaluator import eval_loader, evaluate, where_root_is_read
from visiontk.engine.fit_to_data import fit_batch_size, step_schedule_note, warmup_iterations
from visiontk.engine.performance import compile_model, use_channels_last
from visiontk.engine.optim import build_optimizer, build_scheduler, load_optimizer_state, param_groups
from visiontk.engine.stages import apply_stage, describe_stage, keep_frozen_in_eval, plan_stages, stage_at, stage_param_groups
from visiontk.engine.progress import ProgressBar
from visiontk.engine.run_report import RunReporter, data_summary, hardware
from visiontk.engine.resources import cap_workers, check_batch_memory
from visiontk.engine.seeding import reseed_augmentations, seed_everything, worker_init
from visiontk.errors import JobError, UserError, VisionTKError
from visiontk.metrics.report import MANY_CLASSES, defined, worst_and_best
from visiontk.outputs.output_folder import next_run_dir, refuse_inside_data, split_folders
from visiontk.recipe import Recipe, apply_overrides, dump_recipe
from visiontk.stop_signals import describe, exit_code
from visiontk.tasks.recipes import recipe_from_dict
from visiontk.tasks.registry import get_task


def recipe_changes(before: dict, after: dict, prefix: str = "") -> list[str]:
    """["train.epochs 1 -> 2", ...]: what differs between two recipe mappings, by dotted key,
    a section that appeared or went (data.synthetic) as a whole."""
    out = []
    for k in sorted({*before, *after}):
        a, b = before.get(k), after.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += recipe_changes(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} {a!r} -> {b!r}")
    return out


def _same_place(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


class Interrupted(VisionTKError):
    """Training stopped by Ctrl-C, SIGTERM or SIGHUP: exits 128 + the signal number."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def write_results_csv(rows: list[dict], path: Path) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(buf.getvalue(), path)


def per_class_rows(epoch: int, classes: list[str], scores: dict[str, list]) -> list[dict]:
    """per_class.csv's rows for one evaluation: epoch, class, then each per-class metric."""
    return [{"epoch": epoch, "class": name, **{k: values[i] if defined(values[i]) else None for k, values in scores.items()}}
            for i, name in enumerate(classes)]


def epoch_line(epoch: int, epochs: int, row: dict, classes: list[str], per_class: dict[str, list]) -> str:
    """'epoch 3/10 train/loss=0.41 val/miou=0.62 ...'. Past MANY_CLASSES classes, also the
    worst and best few by the task's first per-class metric (its values are in per_class.csv)."""
    line = " ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float) and k != "lr")
    if len(classes) > MANY_CLASSES and per_class:
        metric, values = next(iter(per_class.items()))
        extremes = worst_and_best(dict(zip(classes, values)))
        if extremes:
            line += f" | {metric} {extremes}"
    return f"epoch {epoch}/{epochs} {line}"


class Trainer:
    def __init__(self, recipe: Recipe, device: str = "auto", project: str | None = None, name: str | None = None,
                 resume: str | None = None, overrides: list[str] | None = None):
        """`overrides`: the command line's --set (and speed flags), which win over a resumed run's recipe."""
        self.world, self.rank, self.local_rank = distributed.launch_info()
        self.task = get_task(recipe.task)
        self.resume_ckpt = None
        # A resumed run's stored data.root when it is not the command line's: read, never written.
        self.foreign_root: str | None = None
        if resume:
            resume_path = Path(resume)
            if resume_path.is_dir():
                resume_path = resume_path / "last.pt"
            self.resume_ckpt = load_checkpoint(resume_path, task=recipe.task)
            self.resume_path_given = resume_path
            if "optimizer" not in self.resume_ckpt:  # best.pt, interrupted.pt: weights only
                raise UserError(f"{resume_path}: holds no optimizer state, so training cannot resume from it "
                                f"(resume from the run's last.pt)")
            recipe = self._resumed_recipe(resume_path, recipe, overrides or [])
            self.run_dir = resume_path.parent
        else:
            project_dir = Path(project or recipe.output.project)
            self.run_name = name or recipe.output.name or recipe.name
            self.run_dir = next_run_dir(project_dir, recipe.task, self.run_name)
            refuse_inside_data(self.run_dir, split_folders(recipe.data.root, recipe.data.train, recipe.data.val),
                               "the run directory (--project, --name)")
        self.recipe = recipe
        self.device = distributed.setup_device(device)
        self.is_main = self.rank == 0
        if self.world > 1 and not resume:
            # Rank 0 names the run (runs/<task>/<name>-2 when taken); another rank, on another
            # node or later, could find that name taken by rank 0 itself and pick another.
            self.run_dir = Path(distributed.broadcast_object(str(self.run_dir)))
        self.saved_epoch = 0  # the last epoch whose last.pt is written

    def _resumed_recipe(self, path: Path, given: Recipe, overrides: list[str]) -> Recipe:
        """The run goes on with the recipe it started with (validated with the checkpoint),
        with this command line's --set applied on top: what the user types wins, and one
        line says what changed. More epochs (or stages) may also come from the recipe file."""
        stored = self.resume_ckpt["recipe"]
        source = f"{path} (recipe{' with --set' if overrides else ''})"
        merged = self._merge_resume(recipe_from_dict(apply_overrides(copy.deepcopy(stored), overrides), source), given)
        changed = recipe_changes(self.resume_ckpt["recipe_obj"].to_dict(), merged.to_dict())
        if changed and self.rank == 0:
            info(f"{path}: resuming with the stored recipe; changed by this command line: {', '.join(changed)}")
        # Writing data (the synthetic set) is for the root the command line names; a stored
        # root elsewhere (the checkpoint's word only) is read as it is.
        if not _same_place(merged.data.root, given.data.root):
            self.foreign_root = merged.data.root
            self.resume_path = path
        return merged

    @staticmethod
    def _merge_resume(saved: Recipe, given: Recipe) -> Recipe:
        # Resuming keeps everything from the original run except the epoch count,
        # which may be raised to train further.
        if saved.stages:
            # With stages the epochs are theirs: training further means stages
            # appended after the saved ones, which must stay as they were.
            n = len(saved.stages)
            if len(given.stages) > n and given.stages[:n] == saved.stages:
                saved.stages = given.stages
                saved.train.epochs = given.train.epochs
            return saved
        saved.train.epochs = given.train.epochs if given.train.epochs > saved.train.epochs else saved.train.epochs
        return saved

    # -- data ---------------------------------------------------------------
    def _loaders(self):
        r, task = self.recipe, self.task
        if self.is_main:
            if self.foreign_root is not None and task.needs_synthesis(r):
                raise UserError(f"{self.resume_path}: the stored data.root {self.foreign_root} is not this command "
                                f"line's; resume never writes data there (give --set data.root=DIR to choose where)")
            task.prepare_data(r)
        self._barrier()
        root = Path(r.data.root)
        if not root.exists():
            # Said here for every task and format (the readers would name a split folder at best).
            raise UserError(f"{root}: data root does not exist (data.root{where_root_is_read(root)}); "
                            f"give it: --set data.root=PATH")
        train_ds, classes = task.build_dataset(r, "train", train=True)
        val_ds, _ = task.build_dataset(r, "val", train=False, classes=classes)
        if len(train_ds) == 0:
            raise UserError(f"{r.data.root}: the training split is empty")
        bs, note = fit_batch_size("train.batch_size", max(1, r.train.batch_size // self.world), len(train_ds))
        if note and self.is_main:
            warn(note)
        h, w = r.image_size
        check_batch_memory("train.batch_size", bs, r.model.in_channels, h, w)
        pin = self.device.type == "cuda"
        workers = cap_workers(r.train.workers, "train.workers")
        common = dict(num_workers=workers, collate_fn=task.collate, pin_memory=pin,
                      persistent_workers=False, worker_init_fn=worker_init)
        self.generator = torch.Generator()
        # A last batch of a single image breaks BatchNorm (one value per channel
        # once the features are 1x1): drop it; a different image each epoch.
        per_rank = math.ceil(len(train_ds) / self.world)
        drop_last = per_rank > 1 and per_rank % bs == 1
        self.batch_size = bs
        if self.world > 1:
            self.sampler = DistributedSampler(train_ds, num_replicas=self.world, rank=self.rank, shuffle=True, seed=r.train.seed)
            train_loader = DataLoader(train_ds, batch_size=bs, sampler=self.sampler, generator=self.generator,
                                      drop_last=drop_last, **common)
        else:
            self.sampler = None
            train_loader = DataLoader(train_ds, batch_size=bs, shuffle=True, generator=self.generator, drop_last=drop_last,
                                      **common)
        # Every rank validates its own shard of the val set (engine/evaluator.py).
        val_loader = eval_loader(task, val_ds, bs, workers, pin_memory=pin, worker_init_fn=worker_init)
        return train_loader, val_loader, classes

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    # -- checkpoints ---------------------------------------------------------
    def _checkpoint(self, epoch: int, with_optim: bool = True) -> dict:
        ckpt = {
            "format": FORMAT,
            "version": VERSION,
            "visiontk": __version__,
            **self.meta,
            "model": state_dict_fp32(self.model),
            "epoch": epoch,
            "best_fitness": self.best_fitness,
            "best_epoch": self.best_epoch,
            # Early stopping's counter: a resumed run stops at the epoch the uninterrupted one would.
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "per_class_history": self.per_class_history,
            "stage": self.stage.index,
        }
        if with_optim:
            ckpt["optimizer"] = self.optimizer.state_dict()
            ckpt["scheduler"] = self.scheduler.state_dict()
            ckpt["scaler"] = self.scaler.state_dict() if self.scaler is not None else {}
        return ckpt

    # -- the loop -------------------------------------------------------------
    def fit(self) -> dict:
        r, task = self.recipe, self.task
        # Every check that can fail on the user's input comes before the run folder is
        # made and before any DataLoader worker starts (they start with the first
        # batch): the pretrained weights file (before the data is read), the data set,
        # the batch's memory, the model and its weights, the loss options. A failed
        # start leaves no folder behind (and the next try gets no -2 suffix).
        if self.resume_ckpt is None:
            pretrained_file(r.model.backbone, r.model.pretrained)
        # The weights' normalisation goes into recipe.yaml and every checkpoint.
        pin_normalization(r)
        train_loader, val_loader, classes = self._loaders()
        self.classes = classes
        seed_everything(r.train.seed)
        if self.resume_ckpt is not None:  # before allocating: the stored weights fit the model they are for
            check_weights_fit(r, len(classes), self.resume_ckpt.get("model"), self.resume_path_given)
        model = build_model(r, len(classes), load_weights=self.resume_ckpt is None, classes=classes)
        # The data set's own class ids, when its task keeps them (datasets' category_ids).
        self.meta = checkpoint_meta(r, classes, getattr(train_loader.dataset, "category_ids", None))
        model.to(self.device)
        # NHWC (train.channels_last) and torch.compile (train.compile): engine/performance.py.
        self.channels_last = use_channels_last(r.train.channels_last, self.device, training=True)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if r.train.compile:
            compile_model(model, r.train.compile_backend)
        # Fine-tuning stages (one plain stage without `stages:`): each sets what
        # trains and builds its own optimizer and schedule.
        self.stage_plan = plan_stages(r)
        self.iters_per_epoch = len(train_loader)
        self.stage = stage_at(self.stage_plan, self.resume_ckpt["epoch"] if self.resume_ckpt is not None else 0)
        self._enter_stage(model, self.stage)
        dtype = amp_dtype(self.device, r.train.amp)
        self.scaler = torch.amp.GradScaler(self.device.type) if dtype == torch.float16 else None
        self.history: list[dict] = []
        # One row per evaluated epoch and class: per_class.csv, rebuilt from last.pt on resume.
        self.per_class_history: list[dict] = []
        self.best_fitness, self.best_epoch, start_epoch = -math.inf, 0, 0
        self.bad_epochs = 0  # early stopping's patience count (saved in last.pt)
        if self.resume_ckpt is not None:
            ck = self.resume_ckpt
            if ck.get("classes") != list(classes):
                raise UserError(f"{self.run_dir / 'last.pt'}: classes in the checkpoint differ from the data set's")
            model.load_state_dict(ck["model"])
            # last.pt from the end of a stage holds the finished stage's optimizer:
            # the stage that starts now begins with a fresh one.
            if ck.get("stage", 0) == self.stage.index:
                load_optimizer_state(self.optimizer, ck["optimizer"])
                self.scheduler.load_state_dict(ck["scheduler"])
            if self.scaler is not None and ck.get("scaler"):
                self.scaler.load_state_dict(ck["scaler"])
            self.history = list(ck.get("history", []))
            self.per_class_history = list(ck.get("per_class_history") or [])
            self.best_fitness = ck.get("best_fitness", -math.inf)
            self.best_epoch = ck.get("best_epoch", 0)
            # The counter restarts with each stage; last.pt from the end of a stage
            # holds the finished stage's count.
            if ck.get("stage", 0) == self.stage.index:
                self.bad_epochs = int(ck.get("bad_epochs", 0))
            start_epoch = self.saved_epoch = ck["epoch"]
            if self.is_main:
                # A kill may have left a temp file of an unfinished write, or stopped
                # between last.pt and results.csv: results.csv is rebuilt from the
                # history saved with the weights.
                for tmp in self.run_dir.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
                self._write_csvs()
            if start_epoch >= r.train.epochs:
                info(f"{self.run_dir}: already trained {start_epoch} of {plural(r.train.epochs, 'epoch')}; nothing to do")
            elif self._early_stop():
                # Killed after last.pt of the epoch that stopped it early, before the run ended.
                info(f"{self.run_dir}: stopped early at epoch {start_epoch} (best epoch {self.best_epoch}); nothing to do")
                start_epoch = r.train.epochs
        if self.world > 1:
            model = self._ddp(model)
        self.model = model
        loss_fn = task.build_loss(r, len(classes))
        if self.is_main:
            self._make_run_dir()
            self.reporter = RunReporter(self.run_dir, {
                "data": data_summary(r, train_loader.dataset, val_loader.dataset, classes),
                "hardware": hardware(self.device, dtype, self.channels_last, bool(r.train.compile), self.world)})
            noun = input_noun(modality_name(r.data.format))  # "image", "signal", "text"
            info(f"{r.task} {r.name}: {r.model.backbone}, {count_parameters(unwrap(model)) / 1e6:.3f} M parameters, "
                 f"{len(train_loader.dataset)} train / {plural(len(val_loader.dataset), 'val ' + noun)}, "
                 f"{plural(len(classes), 'class')}, "
                 f"device {self.device}{f' x{self.world} ({dist.get_backend()})' if self.world > 1 else ''}, "
                 f"{describe_precision(dtype, self.scaler is not None)}{', channels_last' if self.channels_last else ''}"
                 f"{', pinned memory' if self.device.type == 'cuda' else ''}, run dir {self.run_dir}")
        metrics: dict = {}
        try:
            try:
                for epoch in range(start_epoch, r.train.epochs):
                    if epoch >= self.stage.end:
                        self._enter_stage(unwrap(self.model), stage_at(self.stage_plan, epoch))
                        model, self.bad_epochs = self.model, 0
                    row = self._train_epoch(epoch, train_loader, loss_fn, dtype)
                    if self.stage.config is not None:
                        row = {"epoch": row.pop("epoch"), "stage": self.stage.index + 1, **row}
                    last = epoch + 1 == r.train.epochs
                    stop = False
                    improved = False
                    per_class: dict[str, list] = {}
                    val_seconds, evaluated = None, None
                    if (epoch + 1) % r.train.eval_every == 0 or last:
                        # Every rank evaluates its shard with rank 0's weights, BatchNorm statistics
                        # included (each rank's last step updated them from its own batch); after the
                        # metric's sync all hold the same numbers, those of the saved checkpoint.
                        if self.world > 1:
                            distributed.broadcast_buffers(unwrap(model))
                        started = time.perf_counter()
                        metrics = evaluated = evaluate(task, unwrap(model), val_loader, self.device, classes)
                        val_seconds = time.perf_counter() - started
                        row.update({f"val/{k}": v for k, v in task.metric_scalars(metrics).items()})
                        per_class = task.per_class_scores(metrics, classes)
                        if per_class:
                            self.per_class_history += per_class_rows(epoch + 1, classes, per_class)
                        fitness = metrics["fitness"]
                        improved = fitness > self.best_fitness
                        if improved:
                            self.best_fitness, self.best_epoch, self.bad_epochs = fitness, epoch + 1, 0
                        else:
                            self.bad_epochs += 1
                    if self.is_main:
                        row["lr"] = self.optimizer.param_groups[0]["lr"]
                        self.history.append(row)
                        # best.pt first: a kill between the two writes leaves last.pt at the
                        # previous epoch, so the resumed run redoes this epoch and rewrites
                        # best.pt; never a last.pt whose best_epoch names weights not saved.
                        if improved:
                            atomic_save(self._checkpoint(epoch + 1, with_optim=False), self.run_dir / "best.pt")
                        atomic_save(self._checkpoint(epoch + 1), self.run_dir / "last.pt")
                        self.saved_epoch = epoch + 1
                        self._write_csvs()
                        info(epoch_line(epoch + 1, r.train.epochs, row, classes, per_class))
                        stop = self._early_stop()
                        if stop:
                            info(f"early stop: no improvement for {r.train.patience} evaluations (best epoch {self.best_epoch})")
                        self._report(epoch + 1, val_seconds, evaluated, final=last or stop, val_dataset=val_loader.dataset)
                    if self.world > 1:
                        flag = torch.tensor([int(stop)])
                        dist.broadcast(flag, 0)
                        stop = bool(flag.item())
                    if stop:
                        break
                if self.world > 1:
                    distributed.broadcast_buffers(unwrap(self.model))
                if os.environ.get("VISIONTK_LOG_WEIGHTS_SHA256") == "1":
                    # Each rank's own word on its weights (the state saved in last.pt): equal on every
                    # rank when DDP kept them in step, on however many nodes.
                    node = os.environ.get("GROUP_RANK", "0")  # torchrun's node rank
                    info(f"rank {self.rank}/{self.world} (node {node}) on {socket.gethostname()}: weights sha256 "
                         f"{weights_sha256(state_dict_fp32(self.model))}")
            except Exception:
                # Failed before the first epoch was saved (no training image readable, a
                # batch BatchNorm cannot take, a loss gone NaN): nothing of the run is kept.
                # (Ctrl-C is not an Exception: it keeps interrupted.pt.)
                self._remove_unstarted_run()
                raise
        except KeyboardInterrupt as e:  # also SIGTERM and SIGHUP (stop_signals.py)
            raise Interrupted(self._save_interrupted(describe(e)), exit_code(e)) from None
        finally:
            if self.world > 1:
                # The DDP wrapper holds the process group: dropped first, shutdown ends the group.
                self.model = model = unwrap(self.model)
                distributed.shutdown()
        result = {"run_dir": str(self.run_dir), "best_fitness": self.best_fitness, "best_epoch": self.best_epoch,
                  "metrics": metrics}
        if self.is_main:
            if not (self.run_dir / "best.pt").exists() and (self.run_dir / "last.pt").exists():
                atomic_save(self._checkpoint(len(self.history), with_optim=False), self.run_dir / "best.pt")
            if r.output.plots:
                self._plots(metrics)
        return result

    def _make_run_dir(self) -> None:
        """The run folder and its recipe.yaml, once every check has passed; remembers the
        folders it created, which a run failing before its first epoch removes."""
        if self.resume_ckpt is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.created_dirs = []
        else:
            # Claimed now, not when the run was set up: reading a large data set takes a
            # while, and another run of the same name may have taken the folder meanwhile.
            task_dir = self.run_dir.parent
            made = [d for d in (task_dir, *task_dir.parents) if not d.exists()]
            task_dir.mkdir(parents=True, exist_ok=True)
            while True:
                try:
                    self.run_dir.mkdir()
                    break
                except FileExistsError:
                    self.run_dir = next_run_dir(task_dir.parent, task_dir.name, self.run_name)
            self.created_dirs = [self.run_dir, *made]  # deepest first
        atomic_write_text(dump_recipe(self.recipe), self.run_dir / "recipe.yaml")

    def _remove_unstarted_run(self) -> None:
        if not self.is_main or self.resume_ckpt is not None or self.saved_epoch or not getattr(self, "created_dirs", None):
            return
        (self.run_dir / "recipe.yaml").unlink(missing_ok=True)
        for tmp in self.run_dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        for d in self.created_dirs:
            try:
                d.rmdir()  # only when empty: never a file this run did not write
            except OSError:
                break

    def _write_csvs(self) -> None:
        write_results_csv(self.history, self.run_dir / "results.csv")
        if self.per_class_history:
            write_results_csv(self.per_class_history, self.run_dir / "per_class.csv")

    def _report(self, epoch: int, val_seconds, metrics, final: bool, val_dataset) -> None:
        """run_info.json, val_metrics.json and report.html (engine/run_report.py says when it redraws)."""
        model = unwrap(self.model)

        def samples() -> dict:
            if not self.recipe.output.plots:
                return {}  # output.plots: false -- no figures, the sample grids included (the page stays)
            try:
                return self.task.report_samples(model, val_dataset, self.classes, self.device)
            finally:
                model.train()
                keep_frozen_in_eval(self.frozen)

        self.reporter.epoch_done(epoch, self.recipe.train.epochs, val_seconds, metrics,
                                 (self.best_epoch, self.best_fitness), final, samples)

    def _early_stop(self) -> bool:
        # Early stopping ends the run, so it waits for the last stage.
        patience = self.recipe.train.patience
        return patience > 0 and self.bad_epochs >= patience and self.stage.index == len(self.stage_plan) - 1

    def _ddp(self, model: torch.nn.Module) -> torch.nn.Module:
        # A model whose forward leaves some parameters out of the loss (e.g. a head
        # reading a middle backbone feature) says so: DDP then looks for them each
        # step instead of waiting for their gradients forever.
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[self.local_rank] if self.device.type == "cuda" else None,
            find_unused_parameters=bool(getattr(model, "has_unused_parameters", False)))

    def _enter_stage(self, model: torch.nn.Module, stage) -> None:
        """Freeze what `stage` does not train and give it a fresh optimizer and schedule
        (over its own epochs); wraps the model in DDP again, since DDP syncs only the
        parameters that required grad when it was built."""
        r = self.recipe
        self.stage = stage
        self.frozen = apply_stage(model, stage)
        key = "train.warmup_epochs" if r.train.warmup_epochs is not None else "train.warmup_iters"
        if stage.config is None:
            groups = param_groups(model, r.train.weight_decay, r.train.lr)
            cfg, epochs, where = r.train, r.train.epochs, "the run"
        else:
            c = stage.config
            # A stage's own warmup_iters wins over the run's warmup (in iterations or epochs).
            own = c.warmup_iters is not None
            cfg = r.train.model_copy(update={
                "lr": c.lr or r.train.lr,
                "warmup_iters": c.warmup_iters if own else r.train.warmup_iters,
                "warmup_epochs": None if own else r.train.warmup_epochs})
            key = f"stages[{stage.index}].warmup_iters" if own else key
            groups = stage_param_groups(model, stage, self.frozen, cfg.weight_decay, cfg.lr)
            epochs, where = stage.end - stage.start, f"stage {stage.index + 1}"
            if self.is_main:
                info(describe_stage(stage, self.frozen, len(self.stage_plan), cfg.lr))
        # Fitted to the data set's size (engine/fit_to_data.py): epochs become iterations,
        # and a warmup longer than half of them is cut, with a note.
        warmup, note = warmup_iterations(cfg, key, self.iters_per_epoch, epochs, where)
        for line in (note, step_schedule_note(cfg, epochs)):
            if line and self.is_main:
                info(line)
        cfg = cfg.model_copy(update={"warmup_iters": warmup, "warmup_epochs": None})
        self.optimizer = build_optimizer(cfg, groups)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.iters_per_epoch, epochs)
        if self.world > 1 and hasattr(self, "model"):
            self.model = self._ddp(model)
        elif hasattr(self, "model"):
            self.model = model

    def _plots(self, metrics: dict) -> None:
        from visiontk.viz.plots import plot_training_curves

        plots = self.run_dir / "plots"
        plot_training_curves(self.history, plots / "training_curves.png")
        if metrics:
            self.task.eval_plots(metrics, self.classes, plots)

    def _skip_batch(self, batch) -> bool:
        """A batch that unreadable (skipped) images left empty is skipped."""
        if batch is not None:
            return False
        if self.world > 1:
            # Skipping on one rank only would leave the others waiting in all-reduce.
            raise JobError("a batch lost all its images (unreadable files) in a distributed run; "
                           "fix or remove the files reported above")
        return True

    def _save_interrupted(self, how: str = "interrupted") -> str:
        """Save the weights of the unfinished epoch; return the message for the user.

        `interrupted.pt` holds the model as it was when Ctrl-C, SIGTERM or SIGHUP
        came (for predict or eval; no optimizer state, not a resume point).
        Resuming is exact only from the end of an epoch, i.e. from last.pt.
        """
        last, partial = self.run_dir / "last.pt", self.run_dir / "interrupted.pt"
        saved = ""
        if self.is_main and getattr(self, "model", None) is not None:
            try:
                atomic_save({**self._checkpoint(self.saved_epoch, with_optim=False), "interrupted": True}, partial)
                saved = f"; the weights at the interrupt are in {partial}"
            except (OSError, RuntimeError, KeyboardInterrupt):  # a second Ctrl-C, a full disk: still exit
                saved = ""
        if self.saved_epoch:
            return (f"{how}; resume from the end of epoch {self.saved_epoch} with --resume {last}{saved}")
        return f"{how} before the first epoch ended, so there is nothing to resume{saved}"

    def _train_epoch(self, epoch: int, loader, loss_fn, dtype) -> dict:
        r = self.recipe
        seed = r.train.seed * 1000 + epoch
        seed_everything(seed)
        self.generator.manual_seed(seed)
        reseed_augmentations(loader.dataset, seed)
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        model = self.model
        model.train()
        keep_frozen_in_eval(self.frozen)
        sums: dict[str, float] = {}
        n_batches, n_images = 0, 0
        start = time.perf_counter()
        autocast = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()
        with ProgressBar(f"epoch {epoch + 1}/{r.train.epochs}", total=len(loader.sampler), unit="img", enabled=self.is_main) as bar:
            for batch in loader:
                if self._skip_batch(batch):
                    continue
                images, targets = batch
                images = images.to(self.device, non_blocking=True)
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                targets = self.task.targets_to(targets, self.device)
                with autocast:
                    try:
                        outputs = model(images)
                    except ValueError as e:
                        if images.shape[0] == 1 and "Expected more than 1 value per channel" in str(e):
                            if self.batch_size > 1 and self.world == 1:
                                continue  # unreadable images left one: BatchNorm cannot use it alone
                            raise UserError(f"train.batch_size {r.train.batch_size}: a batch of 1 image is too small for "
                                            f"the model's BatchNorm layers at this image size; use train.batch_size >= 2 "
                                            f"and at least 2 training images") from None
                        raise
                loss, parts = loss_fn(outputs, targets)
                # One read of the value per step (a sync on a GPU): the check and the epoch's mean.
                value = loss.item()
                if not math.isfinite(value):
                    raise JobError(f"loss became {value} at epoch {epoch + 1}, batch {n_batches + 1}: "
                                   f"lower train.lr or raise train.warmup_iters")
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                    self.scaler.unscale_(self.optimizer)
                else:
                    loss.backward()
                if r.train.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), r.train.grad_clip)
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.scheduler.step()
                n_batches += 1
                n_images += images.shape[0]
                sums["loss"] = sums.get("loss", 0.0) + value
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                bar.update(images.shape[0], loss=sums["loss"] / n_batches)
        if n_batches == 0 and self.world == 1:
            raise UserError(f"{r.data.root}: no training image could be read in epoch {epoch + 1} (see the warnings above)")
        elapsed = time.perf_counter() - start
        row: dict = {"epoch": epoch + 1}
        row.update({f"train/{k}": v / max(n_batches, 1) for k, v in sums.items()})
        row["time"] = round(elapsed, 3)
        row["train/img_per_s"] = n_images * self.world / max(elapsed, 1e-9)
        return row
