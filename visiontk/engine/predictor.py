"""Streaming batch prediction shared by every task.

Paths are read lazily (stdin lists of any length), decoded by a small thread
pool a few batches ahead of the model (PIL and the resize release the GIL),
and every record is handed to the writer as soon as its batch is done, so
memory stays flat whatever the number of images.
"""
from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import torch

from visiontk.console import warn
from visiontk.data.images import load_image
from visiontk.data.transforms import to_tensor
from visiontk.engine.build import model_from_checkpoint
from visiontk.engine.device import select_device
from visiontk.engine.progress import ProgressBar
from visiontk.errors import DataError
from visiontk.tasks.registry import get_task


def _chunks(it: Iterable, n: int) -> Iterator[list]:
    it = iter(it)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


class Predictor:
    def __init__(self, checkpoint: str | Path, task: str, device: str = "auto", batch_size: int = 32, workers: int = 2,
                 options: dict | None = None):
        self.task = get_task(task)
        self.model, self.ckpt = model_from_checkpoint(checkpoint, task)
        self.device = select_device(device)
        self.model.to(self.device)
        self.batch_size = max(1, batch_size)
        self.workers = max(0, workers)
        self.size = tuple(self.ckpt["input_size"])
        self.mode = "L" if self.ckpt.get("in_channels", 3) == 1 else "RGB"
        self.options = {**self.ckpt.get("predict", {}), **(options or {}), "classes": self.ckpt["classes"]}

    def load(self, path: Path) -> tuple[torch.Tensor | None, dict]:
        """Decode and resize one image; errors become a meta with an `error` field."""
        meta: dict = {"path": str(path)}
        try:
            h, w = self.size
            image = load_image(path, self.mode, draft_size=(w, h))
        except DataError as e:
            meta["error"] = str(e)
            return None, meta
        meta["orig_size"] = (image.shape[0], image.shape[1])
        resized = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA
                             if image.shape[0] > self.size[0] else cv2.INTER_LINEAR)
        if resized.ndim == 2:
            resized = resized[..., None]
        return to_tensor(resized, self.ckpt["mean"], self.ckpt["std"]), meta

    def _load_batch(self, paths: list[Path]) -> list[tuple[torch.Tensor | None, dict]]:
        return [self.load(p) for p in paths]

    def _batches(self, paths: Iterable[Path]) -> Iterator[list[tuple[torch.Tensor | None, dict]]]:
        chunks = _chunks(paths, self.batch_size)
        if self.workers == 0:
            yield from map(self._load_batch, chunks)
            return
        with ThreadPoolExecutor(self.workers) as pool:
            pending: deque = deque()
            for chunk in chunks:
                pending.append(pool.submit(self._load_batch, chunk))
                if len(pending) > self.workers + 1:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    @torch.inference_mode()
    def run(self, paths: Iterable[Path], write: Callable[[dict], None], total: int | None = None) -> dict:
        """Predict every path; `write` receives one record per image, in input order."""
        stats = {"images": 0, "errors": 0}
        with ProgressBar("predict", total=total, unit="img") as bar:
            for batch in self._batches(paths):
                ok = [(t, m) for t, m in batch if t is not None]
                records: dict[int, dict] = {}
                if ok:
                    images = torch.stack([t for t, _ in ok]).to(self.device, non_blocking=True)
                    outputs = self.model(images)
                    metas = [m for _, m in ok]
                    done = self.task.postprocess(outputs, metas, self.options)
                    for m, rec in zip(metas, done):
                        records[id(m)] = rec
                for _, meta in batch:
                    if "error" in meta:
                        warn(meta["error"])
                        stats["errors"] += 1
                        write({"path": meta["path"], "error": meta["error"]})
                    else:
                        write(records[id(meta)])
                    stats["images"] += 1
                bar.update(len(batch))
        return stats

