"""The one training loop every task uses.

Resume is exact at epoch boundaries: every RNG (python, numpy, torch, the
sampler's generator, worker seeds) is re-seeded from (seed, epoch) at the start
of each epoch, and the optimizer, scheduler and scaler states travel in
`last.pt`. The epoch history travels there too, and results.csv is rewritten
from it, so a killed and resumed run never has duplicated or missing rows.
"""
from __future__ import annotations

import csv
import io
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from visiontk import __version__
from visiontk.console import info, warn
from visiontk.engine.build import build_model, checkpoint_meta, count_parameters, state_dict_fp32, unwrap
from visiontk.engine.checkpoint import FORMAT, VERSION, atomic_save, atomic_write_text, load_checkpoint
from visiontk.engine.device import amp_dtype, select_device
from visiontk.engine.optim import build_optimizer, build_scheduler, param_groups
from visiontk.engine.progress import ProgressBar
from visiontk.engine.seeding import reseed_augmentations, seed_everything, worker_init
from visiontk.errors import JobError, UserError, VisionTKError
from visiontk.recipe import Recipe, dump_recipe, recipe_from_dict
from visiontk.tasks.registry import get_task


class Interrupted(VisionTKError):
    exit_code = 130


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def next_run_dir(project: Path, task: str, name: str) -> Path:
    base = project / task / name
    if not base.exists():
        return base
    n = 2
    while (project / task / f"{name}-{n}").exists():
        n += 1
    return project / task / f"{name}-{n}"


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


class Trainer:
    def __init__(self, recipe: Recipe, device: str = "auto", project: str | None = None, name: str | None = None,
                 resume: str | None = None):
        self.world, self.rank, self.local_rank = _dist_info()
        self.task = get_task(recipe.task)
        self.resume_ckpt = None
        if resume:
            resume_path = Path(resume)
            if resume_path.is_dir():
                resume_path = resume_path / "last.pt"
            self.resume_ckpt = load_checkpoint(resume_path, task=recipe.task)
            # The run goes on with the recipe it started with; only what the user
            # overrode on this command line (e.g. more epochs) is taken from `recipe`.
            saved = recipe_from_dict(self.resume_ckpt["recipe"], source=f"{resume_path} (recipe)")
            recipe = self._merge_resume(saved, recipe)
            self.run_dir = resume_path.parent
        else:
            project_dir = Path(project or recipe.output.project)
            run_name = name or recipe.output.name or recipe.name
            self.run_dir = next_run_dir(project_dir, recipe.task, run_name)
        self.recipe = recipe
        self.device = self._setup_device(device)
        self.is_main = self.rank == 0

    @staticmethod
    def _merge_resume(saved: Recipe, given: Recipe) -> Recipe:
        # Resuming keeps everything from the original run except the epoch count,
        # which may be raised to train further.
        saved.train.epochs = given.train.epochs if given.train.epochs > saved.train.epochs else saved.train.epochs
        return saved

    def _setup_device(self, device: str) -> torch.device:
        if self.world > 1:
            dev = select_device(device)
            if dev.type == "cuda":
                dev = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(dev)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
            return dev
        return select_device(device)

    # -- data ---------------------------------------------------------------
    def _loaders(self):
        r, task = self.recipe, self.task
        if self.is_main:
            task.prepare_data(r)
        self._barrier()
        train_ds, classes = task.build_dataset(r, "train", train=True)
        val_ds, _ = task.build_dataset(r, "val", train=False, classes=classes)
        if len(train_ds) == 0:
            raise UserError(f"{r.data.root}: the training split is empty")
        bs = max(1, r.train.batch_size // self.world)
        if bs > len(train_ds):
            warn(f"train.batch_size {r.train.batch_size} is larger than the training set ({len(train_ds)} images); "
                 f"using batches of {len(train_ds)}")
            bs = len(train_ds)
        pin = self.device.type == "cuda"
        common = dict(num_workers=r.train.workers, collate_fn=task.collate, pin_memory=pin,
                      persistent_workers=False, worker_init_fn=worker_init)
        self.generator = torch.Generator()
        if self.world > 1:
            self.sampler = DistributedSampler(train_ds, num_replicas=self.world, rank=self.rank, shuffle=True, seed=r.train.seed)
            train_loader = DataLoader(train_ds, batch_size=bs, sampler=self.sampler, generator=self.generator, **common)
        else:
            self.sampler = None
            train_loader = DataLoader(train_ds, batch_size=bs, shuffle=True, generator=self.generator, **common)
        val_loader = DataLoader(val_ds, batch_size=bs, shuffle=False, **common)
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
            "history": self.history,
        }
        if with_optim:
            ckpt["optimizer"] = self.optimizer.state_dict()
            ckpt["scheduler"] = self.scheduler.state_dict()
            ckpt["scaler"] = self.scaler.state_dict() if self.scaler is not None else {}
        return ckpt

    # -- the loop -------------------------------------------------------------
    def fit(self) -> dict:
        r, task = self.recipe, self.task
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(dump_recipe(r), self.run_dir / "recipe.yaml")
        train_loader, val_loader, classes = self._loaders()
        self.classes = classes
        seed_everything(r.train.seed)
        model = build_model(r, len(classes), load_weights=self.resume_ckpt is None)
        self.meta = checkpoint_meta(r, classes)
        model.to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        groups = param_groups(model, r.train.weight_decay, r.train.lr)
        self.optimizer = build_optimizer(r.train, groups)
        self.scheduler = build_scheduler(r.train, self.optimizer, len(train_loader), r.train.epochs)
        dtype = amp_dtype(self.device, r.train.amp)
        self.scaler = torch.amp.GradScaler(self.device.type) if dtype == torch.float16 else None
        self.history: list[dict] = []
        self.best_fitness, self.best_epoch, start_epoch = -math.inf, 0, 0
        if self.resume_ckpt is not None:
            ck = self.resume_ckpt
            if ck.get("classes") != list(classes):
                raise UserError(f"{self.run_dir / 'last.pt'}: classes in the checkpoint differ from the data set's")
            model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            self.scheduler.load_state_dict(ck["scheduler"])
            if self.scaler is not None and ck.get("scaler"):
                self.scaler.load_state_dict(ck["scaler"])
            self.history = list(ck.get("history", []))
            self.best_fitness = ck.get("best_fitness", -math.inf)
            self.best_epoch = ck.get("best_epoch", 0)
            start_epoch = ck["epoch"]
            if start_epoch >= r.train.epochs:
                info(f"{self.run_dir}: already trained {start_epoch} of {r.train.epochs} epochs; nothing to do")
        if self.world > 1:
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[self.local_rank] if self.device.type == "cuda" else None)
        self.model = model
        loss_fn = task.build_loss(r, len(classes))
        if self.is_main:
            info(f"{r.task} {r.name}: {r.model.backbone}, {count_parameters(unwrap(model)) / 1e6:.3f} M parameters, "
                 f"{len(train_loader.dataset)} train / {len(val_loader.dataset)} val images, {len(classes)} classes, "
                 f"device {self.device}{f' x{self.world}' if self.world > 1 else ''}, run dir {self.run_dir}")
        metrics: dict = {}
        bad_epochs = 0
        try:
            for epoch in range(start_epoch, r.train.epochs):
                row = self._train_epoch(epoch, train_loader, loss_fn, dtype)
                last = epoch + 1 == r.train.epochs
                stop = False
                if self.is_main:
                    if (epoch + 1) % r.train.eval_every == 0 or last:
                        metrics = task.evaluate(unwrap(model), val_loader, self.device, classes)
                        row.update({f"val/{k}": v for k, v in task.metric_scalars(metrics).items()})
                        fitness = metrics["fitness"]
                        improved = fitness > self.best_fitness
                        if improved:
                            self.best_fitness, self.best_epoch, bad_epochs = fitness, epoch + 1, 0
                        else:
                            bad_epochs += 1
                    else:
                        improved = False
                    row["lr"] = self.optimizer.param_groups[0]["lr"]
                    self.history.append(row)
                    atomic_save(self._checkpoint(epoch + 1), self.run_dir / "last.pt")
                    if improved:
                        atomic_save(self._checkpoint(epoch + 1, with_optim=False), self.run_dir / "best.pt")
                    write_results_csv(self.history, self.run_dir / "results.csv")
                    summary = " ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float) and k != "lr")
                    info(f"epoch {epoch + 1}/{r.train.epochs} {summary}")
                    stop = r.train.patience > 0 and bad_epochs >= r.train.patience
                    if stop:
                        info(f"early stop: no improvement for {r.train.patience} evaluations (best epoch {self.best_epoch})")
                if self.world > 1:
                    flag = torch.tensor([int(stop)])
                    dist.broadcast(flag, 0)
                    stop = bool(flag.item())
                if stop:
                    break
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted; the last completed epoch is saved in {self.run_dir / 'last.pt'} "
                f"(resume with --resume {self.run_dir / 'last.pt'})"
            ) from None
        finally:
            if self.world > 1 and dist.is_initialized():
                dist.destroy_process_group()
        result = {"run_dir": str(self.run_dir), "best_fitness": self.best_fitness, "best_epoch": self.best_epoch,
                  "metrics": metrics}
        if self.is_main:
            if not (self.run_dir / "best.pt").exists() and (self.run_dir / "last.pt").exists():
                atomic_save(self._checkpoint(len(self.history), with_optim=False), self.run_dir / "best.pt")
            if r.output.plots:
                self._plots(metrics)
        return result

    def _plots(self, metrics: dict) -> None:
        from visiontk.viz.plots import plot_training_curves

        plots = self.run_dir / "plots"
        plot_training_curves(self.history, plots / "training_curves.png")
        if metrics:
            self.task.write_eval_plots(metrics, self.classes, plots)

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
        sums: dict[str, float] = {}
        n_batches, n_images = 0, 0
        start = time.perf_counter()
        autocast = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()
        with ProgressBar(f"epoch {epoch + 1}/{r.train.epochs}", total=len(loader.sampler), unit="img", enabled=self.is_main) as bar:
            for images, targets in loader:
                images = images.to(self.device, non_blocking=True)
                if self.device.type == "cuda":
                    images = images.contiguous(memory_format=torch.channels_last)
                targets = self.task.targets_to(targets, self.device)
                with autocast:
                    outputs = model(images)
                loss, parts = loss_fn(outputs, targets)
                if not torch.isfinite(loss):
                    raise JobError(f"loss became {loss.item()} at epoch {epoch + 1}, batch {n_batches + 1}: "
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
                sums["loss"] = sums.get("loss", 0.0) + loss.item()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                bar.update(images.shape[0], loss=sums["loss"] / n_batches)
        elapsed = time.perf_counter() - start
        row: dict = {"epoch": epoch + 1}
        row.update({f"train/{k}": v / max(n_batches, 1) for k, v in sums.items()})
        row["time"] = round(elapsed, 3)
        row["train/img_per_s"] = n_images * self.world / max(elapsed, 1e-9)
        return row
