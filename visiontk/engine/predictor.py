"""Streaming batch prediction shared by every task.

Paths are read lazily (stdin lists of any length), decoded into batches
(engine/decode_batches.py: on the CPU threads taking turns with the model or
ahead of it, whichever the run measures faster (engine/cpu_schedule.py); worker
processes ahead of the model on a GPU), and every record is handed to
the writer as soon as its batch is done, so memory stays flat whatever the
number of images. Precision, channels_last and torch.compile are the
switches of engine/performance.py.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from visiontk.console import warn
from visiontk.data.preprocess import Preprocess
from visiontk.engine.build import PendingModel
from visiontk.engine.checkpoint import load_checkpoint
from visiontk.engine.cam import add_cams
from visiontk.engine.cpu_schedule import CpuSchedule, alternate, pipeline
from visiontk.engine.decode_batches import check_loader, decode_batches, resolve_loader, stack_images
from visiontk.engine.exported_file import is_exported_file, load_exported_file
from visiontk.engine.device import select_device
from visiontk.engine.performance import autocast, use_channels_last
from visiontk.engine.progress import ProgressBar
from visiontk.engine.resources import cap_workers, check_batch_memory
from visiontk.engine.runtime_choice import choose_runtime
from visiontk.engine.runtimes import check_backend
from visiontk.errors import DataError
from visiontk.tasks.base import PredictContext, Task
from visiontk.tasks.options.fields import with_checkpoint_defaults
from visiontk.tasks.registry import get_task


class Predictor:
    def __init__(self, checkpoint: str | Path | None, task: str | None, device: str = "auto", batch_size: int = 32,
                 workers: int = 2, options: object | None = None, loaded: tuple | None = None,
                 precision: str = "auto", channels_last: bool | str = "auto", compile: bool = False,
                 loader: str = "auto", backend: str | None = None):
        """`loaded` = (model, meta, task object) predicts with an in-memory model instead of
        a checkpoint (e.g. `transfer embed`); meta holds what a checkpoint would:
        preprocess (or input_size, mean, std, in_channels), and optionally classes and predict.

        options: the task's predict options (its `predict_options` dataclass; None:
        the defaults), unset thresholds taken from the checkpoint.

        precision: auto | fp32 | bf16 | fp16 (auto: fp32 on the CPU, bf16 or fp16 on
        CUDA); channels_last: auto | True | False; compile: torch.compile the model;
        loader: auto | threads | pipeline | processes (engine/decode_batches.py); backend: torch |
        onnxruntime | openvino | auto; None: torch, or an exported file's runtime (engine/runtime_choice.py: only the forward pass is
        swapped; auto precision and backend are chosen by measuring them on the CPU)."""
        check_loader(loader)  # before the model is loaded: a typo fails at once
        check_backend(backend)
        if loaded is not None:
            self.model, self.ckpt, self.task = loaded
        else:
            self.task = get_task(task)
            # A checkpoint, or a file of `visiontk export` with its sidecar (engine/exported_file.py).
            # A checkpoint's model is built when the runtime chosen below needs it: not for a cached export.
            if is_exported_file(checkpoint):
                self.model, self.ckpt = load_exported_file(checkpoint, task)
            else:
                self.ckpt = load_checkpoint(checkpoint, task)
                self.model = PendingModel(checkpoint, self.ckpt)
        self.device = select_device(device)
        self.model.to(self.device)
        self.loader = loader
        self._default_forward = type(self.task).predict_forward is Task.predict_forward
        self.workers = cap_workers(max(0, workers), "--workers")  # never more decoders than CPUs (resources.py)
        preprocess = Preprocess.from_checkpoint(self.ckpt)
        self.size = preprocess.size
        self.mode = preprocess.mode
        options = options if options is not None else self.task.predict_options()
        self.context = PredictContext(with_checkpoint_defaults(options, self.task.stored_settings(self.ckpt)),
                                      list(self.ckpt.get("classes", [])), max(1, batch_size),
                                      self.ckpt.get("category_ids"), self.ckpt.get("recipe"))
        self.batch_size = max(1, self.task.images_per_batch(self.context))
        self.keep_image = self.task.keeps_input_image(self.context)
        # None: the task predicts every image at its own size (e.g. segmentation in tiles).
        self.input_size = self.task.predict_input_size(self.size, self.context)
        # The checkpoint's preprocessing (what eval and training used), at the task's predict size.
        self.preprocess = preprocess.with_size(self.input_size)
        if self.input_size is not None:
            check_batch_memory("--batch-size", self.batch_size, preprocess.channels, *self.input_size)
        # --cam: a Grad-CAM map per image (engine/cam.py), at the model's input size.
        self.cam = bool(getattr(self.context.options, "cam", None)) and self.input_size is not None
        # The backend and precision (measured when auto), at the real batch shape.
        example = (None if self.input_size is None else
                   self.preprocess.example(self.batch_size, torch.Generator().manual_seed(0)))
        self.runtime = choose_runtime(self.model, checkpoint if loaded is None else None, self.device, precision,
                                      backend, use_channels_last(channels_last, self.device), compile, example,
                                      "--cam" if self.cam else None)
        self.model, self.dtype, self.channels_last = self.runtime.model, self.runtime.dtype, self.runtime.channels_last
        self.schedule: CpuSchedule | None = None  # the last run's (describe)

    def describe(self) -> str:
        """The settings this predictor runs with, for the log: device, precision, memory format, decoders."""
        if self.schedule is not None:
            return f"device {self.device}, {self.runtime.describe()}, {self.schedule.describe()}"
        loader = resolve_loader(self.loader, self.device, self.workers)
        pinned = ", pinned memory" if self.device.type == "cuda" else ""
        return f"device {self.device}, {self.runtime.describe()}, {self.workers} decoding {loader}{pinned}"

    def cpu_schedule(self) -> CpuSchedule | None:
        """How decoding threads and the model share the CPU in a run (engine/cpu_schedule.py);
        None for worker processes, a GPU, or no decoding threads. auto measures it
        where the torch model runs batches of one shape on more than one thread;
        other backends keep the thread count they were built with, and a task that
        keeps each decoded image for its output (segment --overlay) does not hold a third
        batch of them."""
        kind = resolve_loader(self.loader, self.device, self.workers)
        if self.device.type != "cpu" or self.workers == 0 or kind == "processes":
            return None
        threads = torch.get_num_threads()
        torch_runs = self.runtime.backend == "torch"
        if kind == "pipeline":
            # onnxruntime and OpenVINO keep the threads they were built with: nothing given up for them.
            return CpuSchedule(pipeline(threads, self.workers if torch_runs else 0), self.workers)
        measured = (self.loader == "auto" and torch_runs and self.input_size is not None
                    and threads > 1 and not self.keep_image)
        return CpuSchedule(None if measured else alternate(threads), self.workers)

    def load(self, path: Path) -> tuple[torch.Tensor | None, dict]:
        """Decode, resize and normalise one image into a CHW tensor; errors become a
        meta with an `error` field."""
        pixels, meta = self.load_pixels(path)
        return (None if pixels is None else self.preprocess.normalize(pixels)), meta

    def load_pixels(self, path: Path) -> tuple[np.ndarray | None, dict]:
        """Decode and resize one image: uint8 HWC (HW1 for grey). What the decoding
        workers do; the batch is normalised at once, next to the model (`_forward`)."""
        # The input's name in its record: the path; a stdin line's number (and text) for
        # signals and sentences (the modality's preprocess, data/modality.py).
        meta: dict = self.preprocess.item_meta(path)
        try:
            image, orig_size = self.preprocess.decode(path)
        except DataError as e:
            meta["error"] = str(e)
            return None, meta
        # (h, w) of the file itself, not of the (possibly draft-decoded) array:
        # tasks report pixel coordinates in the original image.
        meta["orig_size"] = orig_size
        if self.keep_image:
            # For tasks that draw on the input (overlays); may be draft-decoded smaller than orig_size.
            meta["image"] = image
        return self.preprocess.finish(image), meta

    def _batches(self, paths: Iterable[Path], schedule: CpuSchedule | None = None
                 ) -> Iterator[list[tuple[np.ndarray | None, dict]]]:
        lookahead = None if schedule is None else schedule.lookahead
        return decode_batches(paths, self.load_pixels, self.batch_size, self.workers, self.device, self.loader,
                              lookahead)

    def _forward(self, pixels: list) -> object:
        """The task's raw outputs for a batch of decoded images (uint8 HWC arrays or tensors).

        Images of one size (all but tiled prediction) become one uint8 NHWC batch,
        moved to the device (4x fewer bytes than floats) and normalised there; its
        NCHW view is channels_last in memory, as the model wants it. The default
        `Task.predict_forward` is `model(stack(images))`: when a task keeps it, the
        model gets this batch directly, without stacking it once more.
        """
        if self.input_size is None:
            images = [self.preprocess.normalize(p) for p in pixels]
            return self.task.predict_forward(self.model, images, self.device, self.context)
        batch = stack_images(pixels).to(self.device, non_blocking=True)
        # (x / 255 - mean) / std as one multiply-add in place: 4 ms instead of 10 for
        # 32 images at 224 px (3-6% of a resnet18 batch); the same numbers as
        # `Preprocess.normalize` of each image (what evaluation feeds the model).
        x = self.preprocess.normalize_batch(batch)
        if self._default_forward:
            return self.model(x)
        return self.task.predict_forward(self.model, list(x.unbind(0)), self.device, self.context)

    @torch.inference_mode()
    def run(self, paths: Iterable[Path], write: Callable[[dict], None], total: int | None = None,
            flush: Callable[[], None] | None = None, progress: bool = True) -> dict:
        """Predict every path; `write` receives one record per image, in input order;
        `flush` (e.g. the output stream's) is called after each batch, so a reader at
        the other end of a pipe gets results as they come, not when a buffer fills.
        `progress`: False when another shows it (rank 0 of a sharded job, engine/sharding.py)."""
        stats = {"images": 0, "errors": 0}
        self.schedule = schedule = self.cpu_schedule()
        try:
            self._run(paths, write, total, flush, progress, stats, schedule)
        finally:
            if schedule is not None:
                schedule.close()  # torch's thread count as it was
        return stats

    def _run(self, paths, write, total, flush, progress, stats: dict, schedule: CpuSchedule | None) -> None:
        with ProgressBar("predict", total=total, unit="img", enabled=progress) as bar, ThreadPoolExecutor(1) as finisher:
            # Post-processing and writing run in one thread of their own, in order,
            # while the next batch is decoded (cores the decoders leave free);
            # at most one batch waits there, so memory stays flat.
            finishing = None
            for batch in self._batches(paths, schedule):
                if schedule is not None:
                    schedule.batch_arrived()
                ok = [(t, m) for t, m in batch if t is not None]
                outputs = None
                if ok:
                    with autocast(self.device, self.dtype):
                        outputs = self._forward([t for t, _ in ok])
                    if self.cam:
                        add_cams(self.model, ok, self.preprocess, self.task, self.context, self.device)
                if schedule is not None:
                    schedule.model_done()
                if finishing is not None:
                    finishing.result()  # re-raises what the previous batch raised (e.g. a closed pipe)
                args = (batch, outputs, write, flush, stats, bar)
                if self.workers == 0:
                    self._finish(*args)
                    finishing = None
                else:
                    finishing = finisher.submit(self._finish, *args)
            if finishing is not None:
                finishing.result()

    @torch.inference_mode()
    def _finish(self, batch, outputs, write: Callable[[dict], None], flush, stats: dict, bar: ProgressBar) -> None:
        """Post-process one batch and write its records (error records for unreadable images) in input order."""
        records: dict[int, dict] = {}
        if outputs is not None:
            metas = [m for t, m in batch if t is not None]
            done = self.task.postprocess(outputs, metas, self.context)
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
        if flush is not None:
            flush()
        bar.update(len(batch))

