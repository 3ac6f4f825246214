"""A file of `visiontk export` (.onnx, or OpenVINO's .xml) given to `predict` as its model.

Its JSON sidecar (OUT.json, written next to it by the export) holds what a
checkpoint would give predict: the task, the classes (and their data-set ids),
the preprocessing and the post-processing settings. The file runs on the
onnxruntime or OpenVINO backend; it takes inputs of its own shape only (a
`--tile` of another size needs the checkpoint, which exports per shape).
"""
from __future__ import annotations

import json
from pathlib import Path

from visiontk.errors import UserError

SUFFIXES = (".onnx", ".xml")


def is_exported_file(path: str | Path | None) -> bool:
    return path is not None and Path(path).suffix in SUFFIXES


class ExportedFile:
    """Stands for the model until the backend is chosen (engine/runtime_choice.py)."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.meta = path, meta
        shape = meta["input"]["shape"]
        self.input_shape = tuple(shape[1:])
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.names = [o["name"] for o in meta["outputs"]]

    def to(self, device):  # the predictor moves its model; the runtimes place this one themselves
        return self

    def source(self, shape: tuple) -> tuple[Path, list[str]]:
        if tuple(shape) != self.input_shape:
            raise UserError(f"{self.path}: takes inputs of {'x'.join(map(str, self.input_shape))}, not "
                            f"{'x'.join(map(str, shape))} (predict from the checkpoint for other sizes, e.g. --tile)")
        return self.path, self.names


def load_exported_file(path: str | Path, task: str | None) -> tuple[ExportedFile, dict]:
    """(the model, a checkpoint-like meta) from an exported file and its sidecar."""
    path = Path(path)
    side = path.with_name(path.name + ".json")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
        ckpt = {"task": meta["task"], "classes": list(meta["classes"]), "preprocess": meta["input"]["preprocess"],
                "predict": meta.get("postprocess", {}).get("predict", {}), "backbone": meta.get("backbone")}
        if meta.get("category_ids"):
            ckpt["category_ids"] = meta["category_ids"]
        model = ExportedFile(path, meta)
    except FileNotFoundError:
        raise UserError(f"{path}: its metadata {side.name} is missing (visiontk export writes it next to the model)") \
            from None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise UserError(f"{side}: not the metadata of a visiontk export ({e.__class__.__name__}: {e})") from None
    if task is not None and ckpt["task"] != task:
        raise UserError(f"{path}: a {ckpt['task']} model, not {task} (use 'visiontk {ckpt['task']} predict')")
    return model, ckpt
