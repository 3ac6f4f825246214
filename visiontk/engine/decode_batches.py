"""Decoding streamed image paths into batches for the predictor, as fast as the hardware allows.

Paths are pulled from the iterator one batch at a time (a stdin list of any
length is never held in memory) and batches come out in input order. How the
decoding is scheduled depends on where the model runs:

- CPU ("threads", lookahead 0): decoding and the model share the same cores,
  so the two phases take turns: `workers` threads decode a batch (PIL, OpenCV
  and torch release the GIL), then the model runs on every core. Overlapping
  them with the model on every core would not make the cores faster; it would
  set decoding threads against the model's intra-op threads, and each of the
  model's parallel regions waits for its slowest thread (see
  benchmarks/README.md for the profile). Taking turns reaches the CPU ceiling
  1 / (1/forward_rate + 1/decode_rate).
- CPU ("pipeline", lookahead 1): the next batch is decoded while the model runs
  on the cores the decoders leave, for models that gain little from more
  threads (engine/cpu_schedule.py, which also picks between the two under auto;
  the lookahead can change between batches).
- GPU ("processes"): the model runs on the GPU, so decoding overlaps with it:
  DataLoader worker processes (no GIL) decode batches ahead, into pinned
  memory, and the copy to the GPU is non-blocking.

A batch is a list of (pixels or None, meta) pairs, one per path, where pixels
is what the `load` function returns (the predictor's: a uint8 HWC array, or a
uint8 tensor once it went through a worker process or pinned memory); an
unreadable image has None and an `error` in its meta.
"""
from __future__ import annotations

import itertools
import multiprocessing
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from visiontk.errors import UserError

Batch = list[tuple[object | None, dict]]
LOADERS = ("auto", "threads", "pipeline", "processes")


def chunks(it: Iterable, n: int) -> Iterator[list]:
    it = iter(it)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


def check_loader(loader: str) -> None:
    if loader not in LOADERS:
        raise UserError(f"--loader: '{loader}' is not one of {', '.join(LOADERS)}")


def resolve_loader(loader: str, device: torch.device, workers: int) -> str:
    """auto: worker processes when the model runs on a GPU, threads otherwise (on the
    CPU, the predictor then measures whether they run as a pipeline: engine/cpu_schedule.py)."""
    check_loader(loader)
    if loader == "auto":
        return "processes" if device.type == "cuda" and workers > 0 else "threads"
    return loader


def stack_images(pixels: list) -> torch.Tensor:
    """One uint8 NHWC tensor of same-sized images (numpy arrays or tensors).

    numpy's stack for arrays: torch.stack took 2.8 ms for 32 decoded 128x128 images
    where np.stack took 0.28 (benchmarks/README.md, detect predict), 5% of a detect
    demo batch."""
    if all(isinstance(p, np.ndarray) for p in pixels):
        return torch.from_numpy(np.stack(pixels))
    return torch.stack([torch.as_tensor(p) for p in pixels])


def _stack(items: Batch) -> tuple[torch.Tensor | list, list[dict]]:
    """One tensor for the readable images when they share a size (one transfer
    from a worker process, one copy to pinned memory and one to the GPU,
    instead of one per image)."""
    pixels = [t for t, _ in items if t is not None]
    metas = [m for _, m in items]
    if pixels and all(t.shape == pixels[0].shape for t in pixels):
        return stack_images(pixels), metas
    return [torch.as_tensor(t) for t in pixels], metas


def _unstack(images: torch.Tensor | list, metas: list[dict], device: torch.device) -> Batch:
    if torch.is_tensor(images):
        images = images.to(device, non_blocking=True).unbind(0)
    it = iter(images)
    return [(None if "error" in m else next(it), m) for m in metas]


def thread_batches(paths: Iterable[Path], load: Callable, batch_size: int, workers: int,
                   lookahead: int | Callable[[], int], device: torch.device) -> Iterator[Batch]:
    """Each image of a batch is a task for the pool; `lookahead` batches are decoded
    ahead of the one handed out (0: decode a batch only when it is asked for); a
    callable is asked again before each batch."""
    ahead = lookahead if callable(lookahead) else (lambda: lookahead)
    if workers == 0:
        for chunk in chunks(paths, batch_size):
            yield [load(p) for p in chunk]
        return
    pin = device.type == "cuda"
    with ThreadPoolExecutor(workers, thread_name_prefix="visiontk-decode") as pool:
        pending: deque = deque()

        def done(futures) -> Batch:
            batch = [f.result() for f in futures]
            if pin:
                images, metas = _stack(batch)
                if torch.is_tensor(images):
                    images = images.pin_memory()
                batch = _unstack(images, metas, device)
            return batch

        for chunk in chunks(paths, batch_size):
            pending.append([pool.submit(load, p) for p in chunk])
            while len(pending) > ahead():
                yield done(pending.popleft())
        while pending:
            yield done(pending.popleft())


class _PathDataset(torch.utils.data.Dataset):
    """A 'dataset' indexed by path: the sampler hands out the streamed paths themselves."""

    def __init__(self, load: Callable):
        self.load = load

    def __getitem__(self, path):
        return self.load(path)


def process_batches(paths: Iterable[Path], load: Callable, batch_size: int, workers: int,
                    device: torch.device) -> Iterator[Batch]:
    """DataLoader worker processes; its batch sampler is the stream of path chunks,
    so batches stay in order and at most 2 x workers of them are in flight."""
    # fork shares the loader (and whatever it refers to) without pickling it.
    context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    loader = DataLoader(_PathDataset(load), batch_sampler=chunks(paths, batch_size), num_workers=max(1, workers),
                        collate_fn=_stack, pin_memory=device.type == "cuda", multiprocessing_context=context)
    for images, metas in loader:
        yield _unstack(images, metas, device)


def decode_batches(paths: Iterable[Path], load: Callable, batch_size: int, workers: int, device: torch.device,
                   loader: str = "auto", lookahead: int | Callable[[], int] | None = None) -> Iterator[Batch]:
    """Batches of decoded images in input order (see the module docstring for the schedule)."""
    kind = resolve_loader(loader, device, workers)
    if kind == "processes":
        return process_batches(paths, load, batch_size, workers, device)
    if lookahead is None:
        lookahead = workers + 1 if device.type != "cpu" else 1 if kind == "pipeline" else 0
    return thread_batches(paths, load, batch_size, workers, lookahead, device)
