"""Exporting a checkpoint's model to TorchScript, ONNX or OpenVINO IR, for any task.

What is exported is the task model's raw forward pass (the tensors `predict`
hands to the task's post-processing), on normalised NCHW float32 input of
the checkpoint's size. Everything around it (the preprocessing: decoding,
resize rule, normalisation; classes; the task's post-processing settings)
goes into a JSON sidecar next to the file, so a runtime without visiontk
knows how to feed the model and read it.

Every export is checked: the exported model runs on random input and its
outputs are compared with PyTorch's (ONNX with onnxruntime when installed,
OpenVINO IR with OpenVINO's CPU runtime, in fp32).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from visiontk import __version__
from visiontk.console import info, warn
from visiontk.data.preprocess import Preprocess
from visiontk.errors import JobError, UserError
from visiontk.engine.resources import check_batch_memory
from visiontk.engine.runtimes import openvino_core
from visiontk.outputs.output_file import OutputFile

FORMATS = ("torchscript", "onnx", "openvino")
# OpenVINO IR is two files: the graph (.xml) and its weights (.bin, same stem).
SUFFIX = {"torchscript": ".torchscript.pt", "onnx": ".onnx", "openvino": ".xml"}
TOLERANCE = 1e-4


def flatten_outputs(outputs) -> tuple[list[str], tuple[torch.Tensor, ...]]:
    """Output names and tensors of a forward pass: one tensor, a tuple/list, or a dict."""
    if torch.is_tensor(outputs):
        return ["output"], (outputs,)
    if isinstance(outputs, dict):
        keys = sorted(outputs)
        return [str(k) for k in keys], tuple(outputs[k] for k in keys)
    if isinstance(outputs, (list, tuple)) and all(torch.is_tensor(o) for o in outputs):
        return [f"output{i}" for i in range(len(outputs))], tuple(outputs)
    raise UserError(f"cannot export a model whose outputs are {type(outputs).__name__} (tensors, tuples or dicts only)")


class RawOutputs(nn.Module):
    """The task model with its outputs as a flat tuple of tensors (what exporters take)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        return flatten_outputs(self.model(images))[1]


def default_out(checkpoint: Path, fmt: str) -> Path:
    return checkpoint.with_name(checkpoint.stem + SUFFIX[fmt])


def _export_torchscript(wrapper: nn.Module, example: torch.Tensor, out: OutputFile) -> None:
    with warnings.catch_warnings():
        # Sizes computed from the input shape become constants: that is intended
        # (the export is for the checkpoint's input size), so the warning is noise.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # torch marks TorchScript deprecated in favour of torch.export; it is still
        # what C++ (libtorch) and many serving stacks load.
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(wrapper, example, check_trace=False)
        traced = torch.jit.freeze(traced.eval())
        # Saved to memory, then written by Python: libtorch's zip writer, on a full disk,
        # throws from a destructor and aborts the process (exit 134, a core, the temp left).
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    with out.staged() as tmp:
        tmp.write_bytes(buffer.getbuffer())


def _export_onnx(wrapper: nn.Module, example: torch.Tensor, out: OutputFile, names: list[str],
                 dynamic_batch: bool) -> None:
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"--format onnx needs {' and '.join(missing)}: pip install 'visiontk[export]'")
    dynamic = {"images": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    # The exporter prints its progress on stdout, which belongs to results.
    with out.staged(".tmp.onnx") as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (example,), str(tmp), dynamo=True, external_data=False, verbose=False,
                          input_names=["images"], output_names=names, dynamic_shapes=dynamic)


def _export_openvino(wrapper: nn.Module, example: torch.Tensor, out: OutputFile, weights: OutputFile,
                     names: list[str], dynamic_batch: bool) -> None:
    """Through ONNX (torch's exporter, as --format onnx), read by OpenVINO and saved as IR.
    Weights stay fp32 (OpenVINO's default halves them to fp16)."""
    if importlib.util.find_spec("openvino") is None:
        raise UserError("--format openvino needs the openvino package: pip install 'visiontk[export]'")
    import openvino as ov

    with tempfile.TemporaryDirectory(dir=out.path.parent, prefix=f".{out.path.name}.") as tmp:
        onnx_file = Path(tmp) / "model.onnx"
        _export_onnx(wrapper, example, OutputFile(onnx_file, overwrite=True), names, dynamic_batch)
        model = openvino_core().read_model(str(onnx_file))
        ov.save_model(model, str(Path(tmp) / "model.xml"), compress_to_fp16=False)
        # The weights first: a stopped run leaves no graph without them.
        os.replace(Path(tmp) / "model.bin", weights.path)
        os.replace(Path(tmp) / "model.xml", out.path)


def load_exported(path: Path, fmt: str):
    """A callable images (torch tensor) -> tuple of numpy arrays, or None when no runtime is installed."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")

        def run(x):
            with torch.no_grad():
                out = module(x)
            return tuple(o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,)))

        return run
    if fmt == "openvino":
        from visiontk.engine.runtimes import ExportedModel

        names = [o.get_any_name() for o in _openvino_outputs(path)]
        model = ExportedModel("openvino", lambda shape: (path, names), threads=torch.get_num_threads())

        def run_ov(x):
            out = model(x)
            return tuple(o.numpy() for o in (out if isinstance(out, tuple) else (out,)))

        return run_ov
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: tuple(session.run(None, {name: x.numpy()}))


def _openvino_outputs(path: Path):
    return openvino_core().read_model(str(path)).outputs


def max_difference(model: nn.Module, exported, x: torch.Tensor) -> float:
    with torch.no_grad():
        _, expected = flatten_outputs(model(x))
    got = exported(x)
    if len(got) != len(expected):
        raise JobError(f"the exported model gives {len(got)} outputs, PyTorch {len(expected)}")
    worst = 0.0
    for e, g in zip(expected, got):
        g = torch.as_tensor(g)
        if tuple(g.shape) != tuple(e.shape):
            raise JobError(f"the exported model's output has shape {tuple(g.shape)}, PyTorch's {tuple(e.shape)}")
        worst = max(worst, float((g.float() - e.float()).abs().max()) if e.numel() else 0.0)
    return worst


def sidecar(ckpt: dict, checkpoint: Path, out: Path, fmt: str, names: list[str], shapes: list[list[int]],
            dynamic_batch: bool) -> dict:
    recipe = ckpt.get("recipe", {})
    pre = Preprocess.from_checkpoint(ckpt)
    batch = "batch" if dynamic_batch else shapes[0][0] if shapes and shapes[0] else 1
    return {
        "format": fmt,
        "file": out.name,
        "visiontk": __version__,
        "checkpoint": str(checkpoint),
        "task": ckpt["task"],
        "backbone": ckpt.get("backbone"),
        "classes": ckpt["classes"],
        # The data set's own id of each class (COCO category ids, mask values), where it has them.
        **({"category_ids": ckpt["category_ids"]} if ckpt.get("category_ids") else {}),
        # What the model reads and how `predict` makes it from a file (the modality's
        # preprocess, data/modality.py): users of the file get the model's accuracy
        # only with the same inputs.
        "input": {
            "name": "images",
            "shape": [batch, *pre.input_shape],
            **pre.export_input(),
            # The same, as visiontk reads it (visiontk.data.preprocess.Preprocess.from_dict).
            "preprocess": pre.to_dict(),
        },
        "outputs": [{"name": n, "shape": [batch, *s[1:]]} for n, s in zip(names, shapes)],
        # The raw outputs are those the task's post-processing reads: these are its settings.
        "postprocess": {"task": ckpt["task"], "predict": ckpt.get("predict", {}), "head": recipe.get("model", {}).get("head", {})},
        "pretrained": ckpt.get("pretrained"),
    }


def export_checkpoint(checkpoint: str | Path, fmt: str, out: str | Path | None = None, dynamic_batch: bool = False,
                      batch_size: int = 1, overwrite: bool = False, seed: int = 0) -> dict:
    from visiontk.engine.build import model_from_checkpoint

    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    checkpoint = Path(checkpoint)
    out_path = Path(out) if out else default_out(checkpoint, fmt)
    meta_path = out_path.with_name(out_path.name + ".json")
    files = OutputFile(out_path, overwrite), OutputFile(meta_path, overwrite)
    if fmt == "openvino":
        if out_path.suffix != ".xml":
            raise UserError(f"{out_path}: an OpenVINO model is a .xml file (its weights go next to it, .bin)")
        files += (OutputFile(out_path.with_suffix(".bin"), overwrite),)
    for f in files:
        f.check()
        f.refuse_input(checkpoint, "the checkpoint")
    if files[0].is_stream:
        # The export is loaded back to check it against PyTorch: a FIFO or /dev/null cannot be.
        raise UserError(f"{out_path}: --out is not a regular file; the export is read back to check it, "
                        f"so it needs one")
    # The outputs are checked first: a refused --out costs no model loading.
    model, ckpt = model_from_checkpoint(checkpoint)
    model = model.cpu().eval()
    pre = Preprocess.from_checkpoint(ckpt)
    shape = pre.input_shape
    if len(shape) == 3:  # images: the example batch must fit before it is allocated
        check_batch_memory("--batch-size", 2 if dynamic_batch else batch_size, *shape)
    gen = torch.Generator().manual_seed(seed)
    # A batch of 2 when the batch is dynamic: exporters specialise a size-1 dimension.
    example = pre.example(2 if dynamic_batch else batch_size, gen)
    wrapper = RawOutputs(model).eval()
    with torch.no_grad():
        names, outputs = flatten_outputs(model(example))
    if fmt == "torchscript":
        _export_torchscript(wrapper, example, files[0])
    elif fmt == "openvino":
        _export_openvino(wrapper, example, files[0], files[2], names, dynamic_batch)
    else:
        _export_onnx(wrapper, example, files[0], names, dynamic_batch)
    # Check the file against PyTorch, at another batch size too when it is dynamic.
    runner = load_exported(out_path, fmt)
    checked: dict[int, float] = {}
    if runner is None:
        warn("onnxruntime is not installed: the ONNX file was not checked against PyTorch (pip install 'visiontk[export]')")
    else:
        for n in ([1, 3] if dynamic_batch else [example.shape[0]]):
            x = pre.example(n, gen)
            checked[n] = max_difference(model, runner, x)
        worst = max(checked.values())
        if worst > TOLERANCE:
            raise JobError(f"{out_path}: exported outputs differ from PyTorch's by {worst:.3g} (> {TOLERANCE})")
    meta = sidecar(ckpt, checkpoint, out_path, fmt, names, [list(o.shape) for o in outputs], dynamic_batch)
    if fmt == "openvino":
        meta["weights"] = files[2].path.name
    meta["checked"] = {"max_abs_diff": max(checked.values()) if checked else None, "batch_sizes": sorted(checked)}
    files[1].write_text(json.dumps(meta, indent=2) + "\n")
    info(f"exported {checkpoint} to {out_path} ({fmt}) with its metadata in {meta_path}"
         + (f"; outputs match PyTorch within {meta['checked']['max_abs_diff']:.2g}" if checked else ""))
    return {"file": str(out_path), "metadata": str(meta_path), "format": fmt, **meta["checked"]}
