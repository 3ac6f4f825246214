"""torchrun's process group as train and eval use it, and the sampler that shards evaluation.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without it everything here is a
single process (world 1, rank 0) and no process group is made.
"""
from __future__ import annotations

import importlib
import math
import os
from typing import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from visiontk.engine.device import select_device


def launch_info() -> tuple[int, int, int]:
    """(world size, rank, local rank) as torchrun set them; (1, 0, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def setup_device(device: str) -> torch.device:
    """The device of this process; under torchrun, also joins the process group
    (NCCL on CUDA, gloo otherwise), each process on its own GPU."""
    world, _, local_rank = launch_info()
    dev = select_device(device)
    if world > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            # torch.distributed.nn's collectives take `group=group.WORLD` as a default
            # argument, bound when the module is first imported. Imported after the group
            # exists (DDP's construction imports it), those defaults hold the group for the
            # life of the process, so shutdown() could not end it (see there); imported
            # first, they are None.
            importlib.import_module("torch.distributed.nn")
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dev


def broadcast_object(obj, src: int = 0, group=None):
    """Rank `src`'s `obj` (picklable), on every rank; `obj` itself without a process group."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=group)
    return box[0]


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Rank `src`'s buffers (BatchNorm's running statistics) into every rank's module.

    DDP averages gradients, so parameters stay equal, but each rank's forward
    updates its running statistics from its own batch; DDP copies rank 0's only
    at the start of the next training forward.
    """
    if not is_initialized():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def shutdown() -> None:
    """Ends the process group, and with it gloo's worker threads, while Python still runs.

    A gloo worker drops its reference to a collective's tensors just after the
    collective completes, which takes the GIL. Were its threads still alive when the
    interpreter finalizes, a late drop (the last broadcast's, on a busy machine)
    ends the thread by pthread_exit inside a C++ destructor: std::terminate, SIGABRT
    ("terminate called without an active exception") after the run's outputs are
    written, and torchrun fails the run. destroy_process_group() joins the threads
    only when it drops the group's last reference: callers drop what else holds it
    (a DDP wrapper) before calling this.
    """
    if is_initialized():
        dist.destroy_process_group()


def world_size(group=None) -> int:
    """Processes that share an evaluation: 1 without a process group."""
    return dist.get_world_size(group) if is_initialized() else 1


def rank(group=None) -> int:
    return dist.get_rank(group) if is_initialized() else 0


class ShardSampler(Sampler[int]):
    """Rank r of N takes indices r, r + N, r + 2N, ... in order.

    Unlike DistributedSampler it neither pads nor repeats indices to even out
    the shards: the shards of an evaluation set differ by at most one image, and
    every image is scored exactly once however the set divides.
    """

    def __init__(self, length: int, num_replicas: int, rank: int) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.length, self.num_replicas, self.rank = length, num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return max(0, math.ceil((self.length - self.rank) / self.num_replicas))
