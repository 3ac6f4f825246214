"""Evaluating a checkpoint on a data split, for any task."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader

from visiontk.engine.build import model_from_checkpoint
from visiontk.engine.device import select_device
from visiontk.tasks.options.fields import with_checkpoint_defaults


def evaluate_checkpoint(checkpoint: str | Path, task_name: str, data: str | None = None, split: str = "val",
                        device: str = "auto", batch_size: int = 32, workers: int = 0, options: object | None = None):
    """(metrics, checkpoint dict). `options`: the task's eval options (None: the defaults),
    unset thresholds taken from the checkpoint."""
    from visiontk.tasks.registry import get_task

    task = get_task(task_name)
    model, ckpt = model_from_checkpoint(checkpoint, task_name)
    recipe = ckpt["recipe_obj"]
    dev = select_device(device)
    model.to(dev)
    dataset, classes = task.build_dataset(recipe, split, train=False, classes=ckpt["classes"], root=data)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=task.collate)
    options = with_checkpoint_defaults(options if options is not None else task.eval_options(), task.stored_settings(ckpt))
    metrics = task.evaluate(model, loader, dev, ckpt["classes"], options)
    return metrics, ckpt
