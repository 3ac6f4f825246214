"""Speed switches shared by training and prediction: memory format, precision, compilation.

None of them changes what a model computes beyond rounding (bf16/fp16), and
none changes the weights: checkpoints stay fp32 and contiguous, so any setting
reads any checkpoint and writes one every other setting reads.

When each helps (measured in benchmarks/; see the README's "Speed" section):
- channels_last: convolutions in oneDNN (CPU) and cuDNN (tensor cores) run on
  NHWC data without the layout conversions they otherwise do per layer.
- bf16/fp16 autocast: GPUs with tensor cores and CPUs with AMX run
  convolutions 2-4x faster; with AVX-512 BF16 alone bf16 barely pays or
  loses, on AVX2 CPUs it is several times slower. predict's `auto` measures
  it on the model (engine/runtime_choice.py).
- torch.compile: fuses the element-wise layers around convolutions; it pays
  only for long runs (compiling takes tens of seconds, again for each new
  input shape) and needs a C++ compiler (CPU) or Triton (GPU).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from visiontk.errors import UserError


def use_channels_last(setting: bool | str, device: torch.device, training: bool = False) -> bool:
    """auto: on for CUDA, whose convolutions (cuDNN) prefer NHWC; on the CPU for
    inference, where oneDNN's do too; off elsewhere (MPS, CPU training: see
    benchmarks/README.md)."""
    if setting == "auto":
        return device.type == "cuda" or (device.type == "cpu" and not training)
    return bool(setting)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The autocast context for `dtype`, or a no-op for full precision."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def to_float32(value: Any) -> Any:
    """Reduced-precision tensors in (nested lists, tuples, dicts of) model outputs
    back to fp32, so every task's post-processing (box decoding, softmax, mask
    upsampling) does its arithmetic in full precision whatever the model ran in."""
    if torch.is_tensor(value):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(to_float32(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: to_float32(v) for k, v in value.items()}
    return value


def _nhwc_input(module: nn.Module, args: tuple) -> tuple:
    if args and torch.is_tensor(args[0]) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return args


def _fp32_output(module: nn.Module, args: tuple, output: Any) -> Any:
    return to_float32(output)


def set_channels_last(model: nn.Module) -> nn.Module:
    """Weights in NHWC, and a hook that turns every 4-d input NHWC too (tasks and
    tiled prediction call the model themselves, with contiguous tensors)."""
    model.to(memory_format=torch.channels_last)
    model.register_forward_pre_hook(_nhwc_input)
    return model


def compile_model(model: nn.Module, backend: str = "inductor") -> nn.Module:
    """torch.compile in place (`Module.compile`: the module keeps its type, its
    attributes and its state_dict keys, so checkpoints are unchanged)."""
    if not hasattr(nn.Module, "compile"):
        raise UserError("--compile needs torch >= 2.2")
    model.compile(backend=backend)
    return model


def prepare_for_inference(model: nn.Module, device: torch.device, dtype: torch.dtype | None,
                          channels_last: bool, compile: bool = False) -> nn.Module:
    """The model as the predictor runs it; outputs always come back in fp32."""
    if channels_last:
        set_channels_last(model)
    if dtype is not None:
        model.register_forward_hook(_fp32_output)
    if compile:
        compile_model(model)
    return model
