"""Device choice and mixed-precision policy."""
from __future__ import annotations

import torch

from visiontk.errors import UserError


RUNNABLE = ("cpu", "cuda", "mps")


def select_device(name: str = "auto") -> torch.device:
    """auto: CUDA, then MPS, then CPU. An explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device: unknown device '{name}' (auto, cpu, cuda, cuda:N, mps)") from None
    if device.type not in RUNNABLE:
        # torch also names devices no model runs on here ('meta' holds no data, 'xla' needs its runtime).
        raise UserError(f"--device {name}: not a device visiontk runs on (auto, cpu, cuda, cuda:N, mps)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError(f"--device {name}: MPS is not available on this machine")
    return device


# `--precision` for predict, and the string values `train.amp` takes besides true/false/auto.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_EXPLICIT = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(device: torch.device, amp: bool | str) -> torch.dtype | None:
    """The autocast dtype, or None for full precision.

    auto: on CUDA bf16 where the GPU supports it (no loss scaling needed), else
    fp16 with a grad scaler; on CPU/MPS full precision (predict measures fp32
    against bf16 instead: engine/runtime_choice.py). fp32 | bf16 | fp16 ask for
    that precision on any device (bf16 pays on CPUs with AMX; README, "Speed").
    """
    if amp in _EXPLICIT:
        if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError("bf16: this GPU does not support bfloat16; use fp16")
        return _EXPLICIT[amp]
    if amp not in (True, False, "auto"):
        raise UserError(f"--precision {amp!r}: expected one of {', '.join(PRECISIONS)}")
    if amp is False or (amp == "auto" and device.type != "cuda"):
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def describe_precision(dtype: torch.dtype | None, grad_scaler: bool = False) -> str:
    """The precision as the logs say it: fp32, bf16 autocast, fp16 autocast + grad scaler."""
    if dtype is None:
        return "fp32"
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))
    return f"{name} autocast{' + grad scaler' if grad_scaler else ''}"
