"""Training settings that must fit the data set's size, fitted once its size is known.

A recipe is written for one data set and used on another: `warmup_iters: 1000`
at batch 64 is half an epoch of COCO and never ends on 128 images (270
iterations in 135 epochs: the learning rate would peak at 0.27x). What cannot
fit is decided case by case:

- batch size larger than the training set: scaled down to the set, with a
  warning (the run is what the user meant, in full batches);
- warmup (train.warmup_iters, train.warmup_epochs, a stage's warmup_iters)
  longer than MAX_WARMUP_SHARE of the iterations it warms up (the run's, or its
  stage's): cut to that share, with a note naming the key (the schedule then
  still reaches its full rate; `warmup_epochs` scales with the set by itself);
- both warmup keys given: refused by the recipe schema, naming both;
- a step schedule whose step_size is more than the epochs: a note (nothing to
  scale; the rate stays constant, which may be what a short test run wants).

The fitting is a function of the data set and the recipe only, so a resumed run
fits exactly as the run it continues; one resumed with more epochs fits its
warmup to the new total, as the cosine schedule is stretched to it.
"""
from __future__ import annotations

import math

from visiontk.console import plural

# At most half of the iterations warm up: the detect shapes demo's 200 of 600
# (a third) is what the shipped recipes need at most.
MAX_WARMUP_SHARE = 0.5


# Each function returns the fitted value and the line to print (None: nothing changed),
# which the trainer prints on its main process only.


def fit_batch_size(key: str, batch_size: int, images: int) -> tuple[int, str | None]:
    """`batch_size`, or the training set's size when the set is smaller."""
    if batch_size > images:
        return images, (f"{key} {batch_size} is larger than the training set ({plural(images, 'image')}); "
                        f"using batches of {images}")
    return batch_size, None


def warmup_iterations(cfg, key: str, iters_per_epoch: int, epochs: int,
                      where: str = "the run") -> tuple[int, str | None]:
    """The warmup of `cfg` (a train config, or a stage's copy) in iterations, fitted to
    `epochs` x `iters_per_epoch`. `key` names the recipe key the warmup came from."""
    epochs_key = getattr(cfg, "warmup_epochs", None)
    wanted = round(epochs_key * iters_per_epoch) if epochs_key is not None else cfg.warmup_iters
    if wanted <= 0 or cfg.schedule == "onecycle":  # onecycle rises on its own (engine/optim.py)
        return wanted, None
    total = iters_per_epoch * epochs
    cap = max(1, math.floor(total * MAX_WARMUP_SHARE))
    if wanted > cap:
        given = f"{key} {epochs_key:g} ({plural(wanted, 'iteration')})" if epochs_key is not None else f"{key} {wanted}"
        return cap, (f"note: {given} is more than half of the {plural(total, 'iteration')} of {where} "
                     f"({plural(epochs, 'epoch')} x {iters_per_epoch}); warming up over {plural(cap, 'iteration')} "
                     f"instead")
    return wanted, None


def step_schedule_note(cfg, epochs: int) -> str | None:
    if cfg.schedule == "step" and cfg.step_size > epochs:
        return (f"note: train.step_size {cfg.step_size} is more than the {plural(epochs, 'epoch')}: "
                f"the step schedule keeps the learning rate at train.lr")
    return None
