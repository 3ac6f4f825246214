"""Checkpoints: plain dicts of tensors and primitives, written atomically.

They load with `torch.load(weights_only=True)`, so a checkpoint from anyone can
be opened without running code; and a checkpoint alone is enough to predict
(task, backbone, classes, input size, normalisation, recipe travel in it).
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from contextlib import contextmanager
import tempfile
from pathlib import Path

import torch

from visiontk.errors import UserError

FORMAT = "visiontk-checkpoint"
VERSION = 1


@contextmanager
def _sigint_deferred():
    """Hold Ctrl-C until the block ends, then raise KeyboardInterrupt.

    A KeyboardInterrupt inside torch.save makes its zip writer fail on exit with
    a RuntimeError that hides the interrupt; deferring keeps Ctrl-C a clean
    interrupt (exit 130) and the temp file is removed as for any other failure.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def _atomic_write(path: Path, mode: str, write, defer_sigint: bool = False) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    A kill at any moment leaves either the old file or the new one, never a
    half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (_sigint_deferred() if defer_sigint else contextlib.nullcontext()), \
                os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj, path: Path) -> None:
    # Ctrl-C waits for the checkpoint to be whole: a training stopped by hand keeps its last epoch.
    _atomic_write(path, "wb", lambda f: torch.save(obj, f), defer_sigint=True)


def atomic_write_text(text: str, path: Path) -> None:
    _atomic_write(path, "w", lambda f: f.write(text))


def load_checkpoint(path: str | Path, task: str | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure to load gets one clear line
        text = str(e)
        if "Weights only load failed" in text or "weights_only" in text:
            reason = "it holds Python objects that could run code; refused (only tensors and plain data are loaded)"
        elif isinstance(e, OSError) and not isinstance(e, EOFError):
            reason = f"cannot read ({e.strerror or e.__class__.__name__})"
        else:
            # EOFError, RuntimeError (zip, magic number), UnpicklingError, and the
            # KeyError/ValueError the legacy unpickler raises on arbitrary bytes:
            # their messages ('544502645') mean nothing to a user.
            reason = "file is truncated or not a PyTorch checkpoint"
        raise UserError(f"{path}: cannot load checkpoint: {reason}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not a visiontk checkpoint")
    if task is not None and ckpt.get("task") != task:
        raise UserError(f"{path}: checkpoint is for task '{ckpt.get('task')}', not '{task}'")
    # Untrusted data too: every piece of metadata is validated before anything is built from it.
    from visiontk.engine.checkpoint_meta import validate_checkpoint

    ckpt["recipe_obj"] = validate_checkpoint(ckpt, path)
    return ckpt
