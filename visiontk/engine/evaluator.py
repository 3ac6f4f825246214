"""The one evaluation loop, used by `eval` and by the trainer's validation, for every task.

The task turns a batch's model outputs into predictions (`Task.eval_outputs`,
e.g. detection's decoding and NMS) and supplies the metric that scores them
(`Task.metric`); the loop is the same for all. Under torchrun every process
scores its own shard of the split (`eval_loader`), then the metric syncs, so
every process returns the metrics of the whole split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from visiontk.data.preprocess import Preprocess
from visiontk.engine import distributed
from visiontk.engine.build import model_from_checkpoint
from visiontk.engine.performance import prepare_for_inference, use_channels_last
from visiontk.engine.resources import check_batch_memory
from visiontk.errors import UserError
from visiontk.tasks.options.fields import with_checkpoint_defaults


def eval_loader(task, dataset: Dataset, batch_size: int, workers: int = 0, **loader_options) -> DataLoader:
    """Batches of `dataset` in order; with several processes, this process's shard of it."""
    world = distributed.world_size()
    sampler = distributed.ShardSampler(len(dataset), world, distributed.rank()) if world > 1 else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, sampler=sampler, num_workers=workers,
                      collate_fn=task.collate, **loader_options)


@torch.no_grad()
def evaluate(task, model: nn.Module, loader, device: torch.device, classes: list[str], options: Any = None,
             group: Any = None) -> dict:
    """The task's metrics over every batch of `loader`, synced over `group`'s processes.

    `options`: the task's eval options (None: its defaults); a threshold left unset
    takes the task's default. Leaves the model in eval mode.
    """
    options = with_checkpoint_defaults(options if options is not None else task.eval_options(), task.predict_defaults)
    metric = task.metric(classes, options, getattr(loader, "dataset", None))
    metric.reset()
    model.eval()
    for batch in loader:
        if batch is None:  # every image of the batch was unreadable (skipped with a warning)
            continue
        images, targets = batch
        outputs = model(images.to(device, non_blocking=True))
        metric.update(*task.eval_outputs(outputs, targets, classes, options))
    if distributed.world_size(group) > 1:
        metric.sync(group)
    return metric.compute()


def where_root_is_read(root: str | Path) -> str:
    """For a missing data root's message: a relative root is read from the current folder
    (recipes/*/hymenoptera-lenet: ../shared/data/...), which the user may not have in mind."""
    return "" if Path(root).is_absolute() else f", read from the current folder {Path.cwd()}"


def stored_root_present(checkpoint: str | Path, task_name: str, root: str) -> None:
    """The data root stored in the checkpoint's recipe exists, or one line saying how to give
    another: eval run from elsewhere than training would otherwise name only a missing split
    folder."""
    if Path(root).exists():
        return
    where = where_root_is_read(root)
    raise UserError(f"{root}: the data root of {checkpoint}'s recipe does not exist{where}; give the data set's "
                    f"root: visiontk {task_name} eval {checkpoint} PATH/TO/DATA")


def evaluate_checkpoint(checkpoint: str | Path, task_name: str, data: str | None = None, split: str = "val",
                        device: str = "auto", batch_size: int = 32, workers: int = 0, options: object | None = None,
                        before_work: Callable[[dict, str], None] | None = None):
    """(metrics, checkpoint dict). `options`: the task's eval options (None: the defaults),
    unset thresholds taken from the checkpoint.

    Under torchrun every process evaluates its shard and gets the metrics of the
    whole split; the caller lets rank 0 alone print and write. `before_work(ckpt,
    data_root)`: called once the checkpoint is loaded, before any image is read
    (the caller checks its outputs against the data root there).
    """
    from visiontk.tasks.registry import get_task

    task = get_task(task_name)
    owns_group = not distributed.is_initialized()  # a caller's process group is the caller's to end
    dev = distributed.setup_device(device)
    try:
        model, ckpt = model_from_checkpoint(checkpoint, task_name)
        recipe = ckpt["recipe_obj"]
        if data is None:
            stored_root_present(checkpoint, task_name, recipe.data.root)
        if before_work is not None:
            before_work(ckpt, data if data is not None else recipe.data.root)
        model.to(dev)
        # In the memory format `predict` runs it in (fp32 here): the same pixels through
        # the same kernels give the same outputs, so eval describes predict exactly.
        model = prepare_for_inference(model, dev, None, use_channels_last("auto", dev))
        options = with_checkpoint_defaults(options if options is not None else task.eval_options(),
                                           task.stored_settings(ckpt))
        # The checkpoint's preprocessing, as `predict` uses it: eval scores what predict does.
        preprocess = Preprocess.from_checkpoint(ckpt)
        if preprocess.size is not None:
            check_batch_memory("--batch-size", batch_size, preprocess.channels, *preprocess.size)
        dataset, _ = task.eval_dataset(recipe, split, ckpt["classes"], data, preprocess, options)
        loader = eval_loader(task, dataset, batch_size, workers)
        metrics = evaluate(task, model, loader, dev, ckpt["classes"], options)
    finally:
        if owns_group:
            distributed.shutdown()
    return metrics, ckpt
