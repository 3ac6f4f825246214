"""Checkpoints: plain dicts of tensors and primitives, written atomically.

They load with `torch.load(weights_only=True)`, so a checkpoint from anyone can
be opened without running code; and a checkpoint alone is enough to predict
(task, backbone, classes, input size, normalisation, recipe travel in it).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

import torch

from visiontk.data.regular_files import file_kind
from visiontk.errors import UserError, writing
from visiontk.outputs.output_file import make_temp_beside
from visiontk.stop_signals import deferred

FORMAT = "visiontk-checkpoint"
VERSION = 1


def _atomic_write(path: Path, mode: str, write, defer_stop: bool = False) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    A kill at any moment leaves either the old file or the new one, never a
    half-written one.
    """
    path = Path(path)
    f = None
    try:
        # Stop signals wait until the temp file is open, where the cleanup below holds it.
        with writing(path), deferred():
            fd, tmp = make_temp_beside(path)
            f = os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
        with writing(path, tmp), (deferred() if defer_stop else contextlib.nullcontext()), f:
            try:
                write(f)
                f.flush()
            except RuntimeError as e:
                # torch.save's zip writer turns the file's OSError (a full disk) into
                # "[enforce fail at inline_container.cc] unexpected pos ...".
                if "inline_container" not in str(e) and "file write failed" not in str(e):
                    raise
                raise UserError(f"{path}: cannot write (the write failed part way; is the disk full?)") from None
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if f is not None:  # else no temp file was made
            f.close()
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
        if path.exists():  # a FIFO would block torch.load forever; a folder is not one either
            raise UserError(f"{path}: checkpoint is {file_kind(path.stat().st_mode)}, not a regular file")
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


def weights_sha256(state_dict: dict) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes, in name order: equal
    exactly when the weights (and buffers) are bit for bit the same, whichever device,
    process or machine holds them."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
