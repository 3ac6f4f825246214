"""How `predict` shares the CPU's cores between decoding and the model, chosen on the run's own batches.

Both schedules decode with `--workers` threads (engine/decode_batches.py):

- alternate: decoding and the model take turns; the model runs on every core
  (torch's thread count). Best for a model that puts every core to work:
  resnet18 at 224 took 785 ms a batch of 32 on 1 thread and 467 on 2 (2-core
  Xeon), so it should not give up a core.
- pipeline: the next batch is decoded while the model runs on the cores the
  decoders leave (at least one thread). Best for a model that gains little from
  more threads: the detect demo took 12.7 ms on 1 thread and 10.7 on 2, the
  classify demo was faster on 1; taking turns leaves a core idle while such a
  model runs, and here the decoders fill it (detect demo: 1.04-1.06x of the
  take-turns ceiling against 0.91x taking turns; benchmarks/README.md).

Which one wins depends on the model, the CPU and the images (how long they take
to decode), so `--loader auto` on the CPU measures it on the run itself: the
first batches take turns, the next ones run as a pipeline, each timed from one
batch reaching the model to the next (so decoding, the model and all around it
count), and the rest of the run keeps the faster. The trial costs no extra
work: every batch of it is predicted. It ends at a pipelined batch for which
the model alone took as long as a batch taking turns (a pipeline's period is at
least its model's time): resnet18 then gives up its second core for one batch.
The model's outputs do not depend on its thread count (bit for bit on the
models and CPUs tried; tests/test_cpu_schedule.py checks it), so the choice
changes the speed, not the records. A pipeline reads one batch of paths ahead:
from a slow stdin, a batch's records wait for the next batch's paths (with
paths trickling in, both schedules time the same input-bound period, and the
run takes turns).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from visiontk.console import plural

# Periods not timed after the start and after a switch (the first call of the
# model, a pipeline that is not yet full), then the periods timed per schedule.
SETTLE = 1
TIMED = 3
# The pipeline keeps a second batch in memory and gives up a core for the model:
# it runs only when at least this much faster by its median.
PIPELINE_GAIN = 1.05


@dataclass(frozen=True)
class Schedule:
    name: str  # alternate | pipeline
    lookahead: int  # batches decoded ahead of the one the model runs
    model_threads: int

    def describe(self, workers: int) -> str:
        decoders = f"{plural(workers, 'decoding thread')}"
        if self.name == "alternate":
            return f"{decoders} taking turns with the model"
        return f"{decoders} ahead of the model on {plural(self.model_threads, 'thread')}"


def alternate(threads: int) -> Schedule:
    return Schedule("alternate", 0, threads)


def pipeline(threads: int, workers: int) -> Schedule:
    return Schedule("pipeline", 1, max(1, threads - workers))


class CpuSchedule:
    """The schedule of one `Predictor.run`: `fixed`, or (None) measured on its first batches.

    `lookahead()` is read by the decoding threads before each batch; the predictor
    calls `batch_arrived()` when a batch reaches the model and `model_done()` when the
    model is done with it; `close()` gives torch its thread count back."""

    def __init__(self, fixed: Schedule | None, workers: int, clock: Callable[[], float] = time.perf_counter):
        self.workers = workers
        self.clock = clock
        self.threads = threads = torch.get_num_threads()  # given back by close()
        self.candidates = [fixed] if fixed is not None else [alternate(threads), pipeline(threads, workers)]
        self.index = 0
        self.periods: list[list[float]] = [[] for _ in self.candidates]
        self.decided: Schedule | None = fixed
        self.last: float | None = None
        self.arrived = 0  # batches since the start or the last switch
        self.model_time: float | None = None  # a pipelined batch's, when it ended the trial
        self._apply(self.candidates[0])

    @property
    def current(self) -> Schedule:
        return self.decided or self.candidates[self.index]

    def lookahead(self) -> int:
        return self.current.lookahead

    def batch_arrived(self) -> None:
        now = self.clock()
        if self.decided is None and self.last is not None:
            self.arrived += 1
            if self.arrived > SETTLE:
                self.periods[self.index].append(now - self.last)
            if len(self.periods[self.index]) == TIMED:
                if self.index + 1 < len(self.candidates):
                    self.index += 1
                    self.arrived = 0
                    self._apply(self.candidates[self.index])
                else:
                    self.decided = self._fastest()
                    self._apply(self.decided)
        self.last = now

    def model_done(self) -> None:
        """Called when the model is done with the batch that arrived last."""
        if self.decided is None and self.index == 1 and self.last is not None:
            took = self.clock() - self.last
            if took * PIPELINE_GAIN >= self._medians()[0]:
                self.model_time = took
                self.decided = self.candidates[0]
                self._apply(self.decided)

    def _fastest(self) -> Schedule:
        taking_turns, piped = self._medians()
        return self.candidates[1] if piped * PIPELINE_GAIN <= taking_turns else self.candidates[0]

    def _medians(self) -> list[float]:
        import statistics  # only once a trial ends (start-up: engine/runtime_choice.py does the same)

        return [statistics.median(p) if p else math.nan for p in self.periods]

    def _apply(self, schedule: Schedule) -> None:
        if torch.get_num_threads() != schedule.model_threads:
            torch.set_num_threads(schedule.model_threads)

    def close(self) -> None:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def describe(self) -> str:
        text = self.current.describe(self.workers)
        if len(self.candidates) == 1:
            return text
        if self.decided is None:
            return f"{text} (auto: too few batches to compare the schedules)"
        if self.model_time is not None:
            threads = plural(self.candidates[1].model_threads, "thread")
            return (f"{text} (auto: the model alone took {self.model_time * 1000:.1f} ms a batch on {threads}, "
                    f"a batch taking turns {self._medians()[0] * 1000:.1f} ms)")
        turns, piped = (m * 1000 for m in self._medians())
        return f"{text} (auto: a batch every {piped:.1f} ms as a pipeline, every {turns:.1f} ms taking turns)"
