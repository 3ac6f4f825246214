"""Inference backends: the model's forward pass run by onnxruntime or OpenVINO.

Only the forward pass is swapped. `ExportedModel` is called as the PyTorch model
is (a normalised NCHW batch tensor in, the task's raw output tensors out), so the
predictor's decoding and normalisation, the task's post-processing (YOLO grid
decoding, NMS, mask upsampling, tiling) and the writers stay visiontk's own.

Both runtimes read the ONNX file of `visiontk export` (OpenVINO reads ONNX
directly, or its own IR, `.xml` + `.bin`). They run on the CPU, with as many
threads as torch has (the predictor's decoders take turns with them).
"""
from __future__ import annotations

import functools

import importlib.util
import re
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from visiontk.errors import UserError

BACKENDS = ("torch", "onnxruntime", "openvino")
CHOICES = ("auto", *BACKENDS)
INSTALL = "pip install 'visiontk[export]'"
# Input shapes whose compiled model OpenVINO keeps (a batch size and the last,
# partial, batch; tiles of a few sizes): static shapes run faster than dynamic ones.
_KEPT_SHAPES = 4


def check_backend(name: str | None) -> None:
    if name is not None and name not in CHOICES:
        raise UserError(f"--backend {name!r}: expected one of {', '.join(CHOICES)}")


def installed(backend: str) -> bool:
    """The runtime is importable (torch always is); ONNX export needs onnx and onnxscript too."""
    if backend == "torch":
        return True
    return importlib.util.find_spec(backend) is not None


def can_export_onnx() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def require(backend: str) -> None:
    if not installed(backend):
        raise UserError(f"--backend {backend}: the {backend} package is not installed ({INSTALL})")


@functools.cache
def openvino_core():
    """The one OpenVINO Core of the process, never released.

    On a CPU with AMX, OpenVINO's CPU plugin gives each Core's engine a bigger
    alternate signal stack and, when the Core goes, puts back the one it found.
    Two Cores released in the order they were made left the first one's stack,
    already unmapped, in place: the next signal (Ctrl-C, SIGTERM) crashed the
    process (exit 139) instead of stopping it (openvino 2026 on an AMX Xeon;
    tests/test_backends.py). One Core makes one engine, and its stack stays valid."""
    import openvino as ov

    return ov.Core()


def openvino_bf16() -> bool:
    """OpenVINO runs bf16 on this CPU (AVX-512 BF16 or AMX): its CPU plugin says so."""
    if not installed("openvino"):
        return False
    return "BF16" in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def precisions(backend: str) -> tuple[str, ...]:
    """The precisions a backend runs on the CPU here: onnxruntime fp32 only; OpenVINO
    bf16 too where the CPU has it; torch fp32, bf16 and fp16 autocast."""
    if backend == "onnxruntime":
        return ("fp32",)
    if backend == "openvino":
        return ("fp32", "bf16") if openvino_bf16() else ("fp32",)
    return ("fp32", "bf16", "fp16")


def outputs_from(names: list[str], arrays: list[np.ndarray]):
    """The raw outputs as the PyTorch model returns them (export.flatten_outputs, reversed)."""
    tensors = [torch.from_numpy(np.asarray(a)) for a in arrays]
    if names == ["output"]:
        return tensors[0]
    if all(re.fullmatch(r"output\d+", n) for n in names):
        return tuple(tensors)
    return dict(zip(names, tensors))


class _OnnxRuntime:
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        # The memory pattern plans one block for every activation of a batch at once: for a
        # U-Net on 32 images at 256 px it peaked at 1,476 MB against 868 MB without it,
        # at the same speed (resnet18 at 224: 420 against 400 MB) on a 2-core CPU.
        options.enable_mem_pattern = False
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input: x})


class _OpenVino:
    def __init__(self, path: Path, threads: int, precision: str):
        self.core = openvino_core()
        self.path = path
        self.config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                       "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        self.compiled: OrderedDict = OrderedDict()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        shape = tuple(x.shape)
        compiled = self.compiled.pop(shape, None)
        if compiled is None:
            model = self.core.read_model(str(self.path))
            model.reshape(list(shape))
            compiled = self.core.compile_model(model, "CPU", self.config)
        self.compiled[shape] = compiled  # most recent last
        while len(self.compiled) > _KEPT_SHAPES:
            self.compiled.popitem(last=False)
        result = compiled(x)  # copies the outputs out of the request's buffers
        return [result[o] for o in compiled.outputs]


class ExportedModel:
    """The forward pass of an exported model, called like the PyTorch model.

    `source(input_shape)` gives the file for inputs of that (C, H, W) shape and
    its output names: the predictor's export cache makes one per shape (tiled
    segmentation meets a few); an exported file given as the model takes only its
    own. `fixed_batch`: the file's batch size when it is not dynamic (inputs are
    cut into it, the last part padded).
    """

    def __init__(self, backend: str, source: Callable[[tuple], tuple[Path, list[str]]], threads: int,
                 precision: str = "fp32", fixed_batch: int | None = None):
        if backend not in ("onnxruntime", "openvino"):
            raise UserError(f"--backend {backend}: not a runtime of exported models")
        require(backend)
        if precision not in precisions(backend):
            raise UserError(f"--backend {backend} --precision {precision}: {backend} runs "
                            f"{' or '.join(precisions(backend))} on this CPU")
        self.backend, self.source = backend, source
        self.threads, self.precision, self.fixed_batch = threads, precision, fixed_batch
        self.sessions: dict[tuple, tuple[Callable, list[str]]] = {}

    def _session(self, shape: tuple) -> tuple[Callable, list[str]]:
        if shape not in self.sessions:
            path, names = self.source(shape)
            session = (_OnnxRuntime(path, self.threads) if self.backend == "onnxruntime"
                       else _OpenVino(path, self.threads, self.precision))
            self.sessions[shape] = session, names
        return self.sessions[shape]

    def __call__(self, x: torch.Tensor):
        # The runtimes read plain C-order arrays; the predictor's batch is an NCHW view of NHWC memory.
        array = np.ascontiguousarray(x.detach().cpu().float().numpy() if x.is_floating_point() else x.cpu().numpy())
        session, names = self._session(tuple(array.shape[1:]))
        n, fixed = len(array), self.fixed_batch
        if fixed is None or n == fixed:
            return outputs_from(names, session(array))
        # A file of a fixed batch size: the input in chunks of that size, the last padded.
        parts = []
        for i in range(0, n, fixed):
            chunk = array[i:i + fixed]
            m = len(chunk)
            if m < fixed:
                chunk = np.concatenate([chunk, np.zeros((fixed - m, *chunk.shape[1:]), chunk.dtype)])
            parts.append([o[:m] for o in session(chunk)])
        return outputs_from(names, [np.concatenate(outs) for outs in zip(*parts)])

    def describe(self) -> str:
        return f"{self.backend} {self.precision}"
