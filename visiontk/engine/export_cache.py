"""ONNX exports made by `predict --backend onnxruntime|openvino|auto`, once per model and input shape.

A checkpoint is exported on first use into the cache (engine/cache_dir.py,
exports/<key>/model.onnx), with a dynamic batch dimension so the last, partial,
batch runs too. The key is the checkpoint file's sha256, the input shape and the
versions of visiontk, torch and the exporter: a retrained checkpoint, another
input size (a --tile) or an upgrade exports again. Each file is checked against
PyTorch on random input as `visiontk export` checks its files (same tolerance,
at batch sizes 1 and 3 around the traced 2); both runtimes read it (OpenVINO
reads ONNX directly).

The exporter: torch's TorchScript-based one while torch still has it (0.3 s for
a small model, against 7-15 s for the torch.export-based one on a 2-core CPU, a
delay paid by the first predict of each model), else, or when its file fails
the check, the torch.export-based one that `visiontk export` uses.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from torch import nn

from visiontk import __version__
from visiontk.console import info
from visiontk.backbones.weights_cache import sha256_of
from visiontk.engine.build import built
from visiontk.engine.cache_dir import cache_dir
from visiontk.engine.runtimes import INSTALL, can_export_onnx
from visiontk.errors import JobError, UserError


def package_version(package: str) -> str:
    """The installed version of `package`; "-" when it is not installed."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def _legacy_export(wrapper: nn.Module, x: torch.Tensor, file: Path, names: list[str]) -> bool:
    """The TorchScript-based exporter, batch dimension dynamic; False when torch no longer has it or it fails."""
    import contextlib
    import io
    import warnings

    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # its deprecation, and tracing's notes on constant sizes
            torch.onnx.export(wrapper, (x,), str(file), dynamo=False, input_names=["images"], output_names=names,
                              dynamic_axes={n: {0: "batch"} for n in ["images", *names]}, opset_version=17)
    except Exception:  # noqa: BLE001 - removed from torch, or a model it cannot trace: the other exporter
        file.unlink(missing_ok=True)
        return False
    return file.is_file()


class ExportCache:
    """The ONNX file of one checkpoint's model for each input shape it is asked for."""

    def __init__(self, checkpoint: str | Path, model):
        """`model`: the checkpoint's module, or an engine/build.PendingModel (built only to export)."""
        self.checkpoint = Path(checkpoint)
        self.model = model
        self._sha: str | None = None

    def key(self, shape: tuple) -> str:
        if self._sha is None:
            self._sha = sha256_of(self.checkpoint)
        text = json.dumps([self._sha, list(shape), __version__, torch.__version__, package_version("onnxscript"),
                           package_version("onnx")])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def onnx_for(self, shape: tuple, example: torch.Tensor | None = None) -> tuple[Path, list[str]]:
        """The file for inputs of (C, H, W) `shape` and its output names, exported now when the cache lacks it."""
        folder = cache_dir("exports", self.key(shape))
        path = folder / "model.onnx"
        meta = folder / "outputs.json"
        if path.is_file() and meta.is_file():
            try:
                return path, json.loads(meta.read_text(encoding="utf-8"))["names"]
            except (OSError, ValueError, KeyError):
                pass  # a damaged entry: exported again
        return path, self._export(folder, shape, example)

    def _export(self, folder: Path, shape: tuple, example: torch.Tensor | None) -> list[str]:
        from visiontk.engine.export import (TOLERANCE, RawOutputs, _export_onnx, flatten_outputs, load_exported,
                                            max_difference)
        from visiontk.outputs.output_file import OutputFile

        if not can_export_onnx():
            raise UserError(f"--backend: exporting the model to ONNX needs onnx and onnxscript ({INSTALL})")
        info(f"exporting the model for inputs of {'x'.join(map(str, shape))} to ONNX (once: kept in {folder.parent})")
        model = built(self.model).eval()
        gen = torch.Generator().manual_seed(0)
        # A batch of 2: exporters specialise a size-1 dimension, and the batch is dynamic.
        x = example[:2] if example is not None and len(example) >= 2 else torch.randn(2, *shape, generator=gen)
        x = x.detach().cpu().contiguous()
        with torch.no_grad():
            names, _ = flatten_outputs(model(x))
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))

        def check(file: Path) -> float:
            runner = load_exported(file, "onnx")
            if runner is None:
                return 0.0
            return max(max_difference(model, runner, x[:1]), max_difference(model, runner, torch.cat([x, x[:1]])))

        try:
            file = staging / "model.onnx"
            worst = None
            if _legacy_export(RawOutputs(model).eval(), x, file, names):
                try:
                    worst = check(file)
                except Exception:  # noqa: BLE001 - a file onnxruntime cannot run: the other exporter
                    worst = None
            if worst is None or worst > TOLERANCE:
                _export_onnx(RawOutputs(model).eval(), x, OutputFile(file, overwrite=True), names, dynamic_batch=True)
                worst = check(file)
            if worst > TOLERANCE:
                raise JobError(f"{self.checkpoint}: the ONNX export differs from PyTorch by {worst:.3g} "
                               f"(> {TOLERANCE}); use --backend torch")
            (staging / "outputs.json").write_text(json.dumps({"names": names, "checkpoint": str(self.checkpoint),
                                                              "shape": list(shape)}) + "\n", encoding="utf-8")
            try:
                os.replace(staging, folder)  # a folder: atomic when the target is absent or empty
            except OSError:
                if not (folder / "outputs.json").is_file():
                    shutil.rmtree(folder, ignore_errors=True)  # a damaged entry
                    os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return names
