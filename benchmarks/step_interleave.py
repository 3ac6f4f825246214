"""The Trainer and a plain loop, step by step in turn, inside the Trainer's own fit().

Why: on this shared 2-core VM the same epoch (same seed, same work) takes
2.0-2.6 s of CPU time from one run to the next with nothing else running (the
CPU itself runs slower or faster: neighbours on the shared cache and memory).
An epoch of the Trainer and an epoch of the plain loop side by side still saw
different seconds of that drift, and the per-round ratios spread 0.72-1.20.
Taking turns at every step (tens of milliseconds) puts both loops in the same
seconds of the machine, so what is left in a round's ratio is the loops'
difference.

How: the Trainer runs unchanged; only the loader its epoch iterates is wrapped.
Before each batch the wrapper hands to the Trainer, it runs one step of the
plain loop (its own data loader, model and optimizer, fetching its batch
inside the step) and times it. The Trainer's epoch time (its own measurement)
minus the seconds spent in those plain steps is the Trainer's time; the plain
steps' seconds are the plain loop's. Plain steps left over when the Trainer's
epoch ends run before the Trainer's loop closes, and are taken out the same way.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from visiontk.engine.trainer import Trainer


class StepInterleaved:
    """The Trainer's training loader, with one step of `steps` run before each batch it yields.

    `steps`: every next() runs one step of the other loop and returns the number of
    images it trained on. Everything else (dataset, sampler, len) is the loader's:
    the Trainer reads them.
    """

    def __init__(self, loader, steps: Iterator[int]) -> None:
        self.loader, self.steps = loader, steps
        self.other_seconds, self.other_images, self.images = 0.0, 0, 0
        self.order: list[str] = []  # "plain" / "ours", for the tests

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def _other_step(self) -> bool:
        start = time.perf_counter()
        n = next(self.steps, None)
        self.other_seconds += time.perf_counter() - start
        if n is None:
            return False
        self.other_images += n
        self.order.append("plain")
        return True

    def __iter__(self):
        for batch in self.loader:
            self._other_step()
            self.images += batch[0].shape[0]
            self.order.append("ours")
            yield batch
        while self._other_step():
            pass


class StepBySide(Trainer):
    """The Trainer as it is, each training epoch taking turns step by step with a plain loop.

    `plain_steps()` makes a fresh plain loop's epoch: an iterator of steps (setup
    done before it is returned, so only steps are timed). `pairs`: per epoch,
    (Trainer images/s, plain images/s); `seconds`: per epoch, (Trainer's, plain's);
    `orders`: per epoch, who ran when.
    """

    def __init__(self, recipe, plain_steps: Callable[[], Iterator[int]], **kwargs) -> None:
        super().__init__(recipe, **kwargs)
        self.plain_steps = plain_steps
        self.pairs: list[tuple[float, float]] = []
        self.seconds: list[tuple[float, float]] = []
        self.orders: list[list[str]] = []

    def _train_epoch(self, epoch, loader, *args):
        wrapped = StepInterleaved(loader, self.plain_steps())
        row = super()._train_epoch(epoch, wrapped, *args)
        # The Trainer's own epoch time, less the plain steps that ran inside it.
        ours = wrapped.images / row["train/img_per_s"] - wrapped.other_seconds
        self.seconds.append((ours, wrapped.other_seconds))
        self.pairs.append((wrapped.images / ours, wrapped.other_images / wrapped.other_seconds))
        self.orders.append(wrapped.order)
        return row
