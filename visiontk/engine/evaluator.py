"""Evaluating a checkpoint on a data split, for any task."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader

from visiontk.data.preprocess import Preprocess
from visiontk.engine.build import model_from_checkpoint
from visiontk.engine.device import select_device
from visiontk.engine.performance import prepare_for_inference, use_channels_last
from visiontk.engine.resources import check_batch_memory
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
    # In the memory format `predict` runs it in (fp32 here): the same pixels through
    # the same kernels give the same outputs, so eval describes predict exactly.
    model = prepare_for_inference(model, dev, None, use_channels_last("auto", dev))
    options = with_checkpoint_defaults(options if options is not None else task.eval_options(), task.stored_settings(ckpt))
    # The checkpoint's preprocessing, as `predict` uses it: eval scores what predict does.
    preprocess = Preprocess.from_checkpoint(ckpt)
    if preprocess.size is not None:
        check_batch_memory("--batch-size", batch_size, preprocess.channels, *preprocess.size)
    dataset, classes = task.eval_dataset(recipe, split, ckpt["classes"], data, preprocess, options)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=task.collate)
    metrics = task.evaluate(model, loader, dev, ckpt["classes"], options)
    return metrics, ckpt
