"""Checkpoints: plain dicts of tensors and primitives, written atomically.

They load with `torch.load(weights_only=True)`, so a checkpoint from anyone can
be opened without running code; and a checkpoint alone is enough to predict
(task, backbone, classes, input size, normalisation, recipe travel in it).
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

import torch

from visiontk.errors import UserError
from visiontk.stop_signals import deferred

FORMAT = "visiontk-checkpoint"
VERSION = 1


def _atomic_write(path: Path, mode: str, write, defer_stop: bool = False) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    A kill at any moment leaves either the old file or the new one, never a
    half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with (deferred() if defer_stop else contextlib.nullcontext()), \
                os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj, path: Path) -> None:
    # Ctrl-C, SIGTERM and SIGHUP wait for the checkpoint to be whole: a stopped training keeps its last epoch.
    _atomic_write(path, "wb", lambda f: torch.save(obj, f), defer_stop=True)


def atomic_write_text(text: str, path: Path) -> None:
    _atomic_write(path, "w", lambda f: f.write(text))


def atomic_write_bytes(data: bytes, path: Path) -> None:
    _atomic_write(path, "wb", lambda f: f.write(data))


# The weights-only unpickler's reasons that mean "this pickle names Python code"
# (a class or function to import); any other failure of it (an unknown opcode in
# random bytes) means the file is not a checkpoint at all.
_NAMES_CODE = re.compile(r"GLOBAL \S+|Can only create new object|Trying to call reduce|Trying to instantiate")


def load_checkpoint(path: str | Path, task: str | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure to load gets one clear line
        text = str(e)
        if _NAMES_CODE.search(text):
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
