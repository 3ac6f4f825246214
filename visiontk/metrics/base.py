"""What the engine's evaluation loop asks of a task's metric.

The loop (engine/evaluator.py) calls `reset`, then `update` once per batch
with what the task's `eval_outputs` made of the model's outputs, then `sync`
when several processes shared the split, then `compute`. After `sync` every
process holds the state of the whole split, so `compute` gives every rank the
same numbers.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
import torch.distributed as dist


@runtime_checkable
class Metric(Protocol):
    def reset(self) -> None:
        """Forget every update."""

    def update(self, predictions: Any, truths: Any) -> None:
        """Add one batch: the task's predictions and the ground truth they are scored against."""

    def sync(self, group: Any = None) -> None:
        """Merge the state of every process of `group` (a torch.distributed group,
        None: the default one) into each of them. Called once, after the last update."""

    def compute(self) -> dict:
        """The metrics of everything added (and synced), as JSON-able values; holds
        'fitness' (higher is better), which picks best.pt."""


def collective_device(group=None) -> torch.device:
    """Where a tensor must be for a collective of this group's backend (NCCL: the GPU, gloo: the CPU)."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_across_ranks(t: torch.Tensor, group: Any = None) -> torch.Tensor:
    """`t` summed over the processes of `group`, on `t`'s device (t itself is left as it was)."""
    buffer = t.detach().to(collective_device(group), copy=True)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=group)
    return buffer.to(t.device)


def gather_across_ranks(items: list, group: Any = None) -> list:
    """Every process's `items` (picklable), concatenated in rank order."""
    gathered: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, items, group=group)
    return [item for part in gathered for item in part]
