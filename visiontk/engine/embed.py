"""Pooled backbone features ("embeddings") for every image, for retrieval and clustering.

The model is a checkpoint's backbone (any task) or a bare backbone with its
ImageNet weights; images stream through the shared Predictor (same decoding,
resizing and normalisation as `predict`), and each record is written as soon
as its batch is done: jsonl lines, or rows of a .npy file whose paths go to an
index file, line i naming row i.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visiontk.backbones.base import Backbone
from visiontk.console import info, warn
from visiontk.data.preprocess import Preprocess
from visiontk.errors import UserError, writing
from visiontk.outputs.json_text import dumps
from visiontk.outputs.output_file import OutputFile
from visiontk.outputs.plan import PredictionOutputs
from visiontk.outputs.records import RecordWriter
from visiontk.tasks.base import Task


class Embedder(nn.Module):
    """Backbone -> global pool of its deepest feature -> [N, C] (optionally L2-normalised)."""

    def __init__(self, backbone: Backbone, pool: str = "avg", normalize: bool = False):
        super().__init__()
        self.backbone = backbone
        self.pool, self.normalize = pool, normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)[-1]
        v = f.amax(dim=(2, 3)) if self.pool == "max" else f.mean(dim=(2, 3))
        return F.normalize(v, dim=1) if self.normalize else v


class EmbedTask(Task):
    """Only what the Predictor needs: one record per image holding its vector."""

    name = "embed"

    def postprocess(self, outputs, metas, context) -> Iterable[dict]:
        vectors = outputs.float().cpu().numpy()
        for meta, v in zip(metas, vectors):
            yield {"path": meta["path"], "embedding": v}


def _is_checkpoint_ref(source: str) -> bool:
    p = Path(source)
    return p.suffix in (".pt", ".pth") or p.is_file() or os.sep in source


def load_embedder(source: str, pretrained: str | None = None, image_size: int | None = None, pool: str = "avg",
                  normalize: bool = False) -> tuple[Embedder, dict]:
    """(embedder in eval mode, meta with preprocess/input_size/mean/std/in_channels/dim/source)."""
    from visiontk.backbones.pretrained import load_pretrained
    from visiontk.backbones.registry import create_backbone, get_backbone_spec
    from visiontk.engine.build import model_from_checkpoint

    if _is_checkpoint_ref(source):
        if pretrained is not None:
            raise UserError(f"--pretrained applies to a backbone name, not to the checkpoint {source}")
        model, ckpt = model_from_checkpoint(source)
        backbone = getattr(model, "backbone", None)
        if not isinstance(backbone, Backbone):
            raise UserError(f"{source}: its model has no shared backbone to take features from")
        # The checkpoint's own preprocessing: the backbone sees images as it was trained on them.
        preprocess = Preprocess.from_checkpoint(ckpt)
        source_name = f"{source} ({ckpt['task']}, {ckpt['backbone']})"
    else:
        spec = get_backbone_spec(source)
        which = pretrained or ("imagenet" if spec.has_imagenet_weights else "none")
        if which == "none":
            warn(f"{source}: no pretrained weights, the features come from random filters")
        backbone = create_backbone(source)
        ref = load_pretrained(backbone, source, which)
        preprocess = Preprocess(size=tuple(ref["input_size"] or (224, 224)), channels=3, mean=ref["mean"], std=ref["std"])
        source_name = f"{source} ({ref['name']} weights)"
    if image_size is not None:
        preprocess = preprocess.with_size((image_size, image_size))
    meta = {"preprocess": preprocess.to_dict(), "input_size": list(preprocess.size), "mean": list(preprocess.mean),
            "std": list(preprocess.std), "in_channels": preprocess.channels, "source": source_name}
    embedder = Embedder(backbone, pool, normalize).eval()
    meta["dim"] = backbone.out_channels[-1]
    return embedder, meta


class JsonlEmbeddingWriter(RecordWriter):
    def __init__(self, stream: IO[str], decimals: int = 6):
        self.stream, self.decimals = stream, decimals

    def __call__(self, record: dict) -> None:
        if "embedding" in record:
            record = {**record, "embedding": [round(float(x), self.decimals) for x in record["embedding"]]}
        self.stream.write(dumps(record) + "\n")


class NpyEmbeddingWriter(RecordWriter):
    """Rows and paths go to anonymous scratch files as they come (memory stays flat
    for any number of images); `close` writes the .npy, its header first now that
    the row count is known, and the index file of paths, each replacing its file
    only then (OutputFile)."""

    def __init__(self, npy: OutputFile, index: OutputFile, dim: int):
        self.npy, self.index, self.dim = npy, index, dim
        # Scratch files next to the .npy: a failure there (a full disk, a read-only folder) is said of it.
        with writing(npy.path):
            try:
                self.raw = tempfile.TemporaryFile(dir=npy.path.parent)
                self.paths = tempfile.TemporaryFile("w+", encoding="utf-8", dir=npy.path.parent)
            except OSError as e:
                raise UserError(f"{npy.path}: cannot write ({e.strerror or e.__class__.__name__})") from None
        self.rows = 0

    def __call__(self, record: dict) -> None:
        if "embedding" not in record:
            return  # unreadable image: warned about by the predictor, not a row
        with writing(self.npy.path):
            self.raw.write(np.asarray(record["embedding"], dtype="<f4").tobytes())
            self.paths.write(record["path"].replace("\n", " ") + "\n")
        self.rows += 1

    def close(self) -> None:
        header = {"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.dim)}
        with writing(self.npy.path), self.npy.staged() as tmp, open(tmp, "wb") as out:
            np.lib.format.write_array_header_1_0(out, header)
            self.raw.seek(0)
            shutil.copyfileobj(self.raw, out, 1 << 20)
        with self.index.staged() as tmp, open(tmp, "w", encoding="utf-8") as out:
            self.paths.seek(0)
            shutil.copyfileobj(self.paths, out)
        self.abort()

    def abort(self) -> None:
        self.raw.close()
        self.paths.close()


def index_path_for(npy: Path) -> Path:
    return npy.with_suffix(".paths.txt")


def embedding_outputs(out: str | None, overwrite: bool, dim: int) -> PredictionOutputs:
    """jsonl on stdout, or FILE.npy and FILE.paths.txt (both checked before any image is read)."""
    if out in (None, "-"):
        return PredictionOutputs(JsonlEmbeddingWriter)
    path = Path(out)
    if path.suffix != ".npy":
        raise UserError(f"{path}: --out must end in .npy (or be - for jsonl on stdout)")
    npy, index = OutputFile(path, overwrite), OutputFile(index_path_for(path), overwrite)
    for f in (npy, index):
        f.check()
    path.parent.mkdir(parents=True, exist_ok=True)
    return PredictionOutputs(lambda stream: NpyEmbeddingWriter(npy, index, dim), files=[npy, index])


def run_embed(source: str, sources: list[str], out: str | None, overwrite: bool = False, pretrained: str | None = None,
              image_size: int | None = None, pool: str = "avg", normalize: bool = False, device: str = "auto",
              batch_size: int = 32, workers: int = 2) -> dict:
    from visiontk.data.sources import iter_sources
    from visiontk.engine.predictor import Predictor

    embedder, meta = load_embedder(source, pretrained, image_size, pool, normalize)
    info(f"embedding with {meta['source']}: {meta['dim']}-d {pool}-pooled features at "
         f"{meta['input_size'][0]}x{meta['input_size'][1]}")
    predictor = Predictor(None, None, device=device, batch_size=batch_size, workers=workers,
                          loaded=(embedder, meta, EmbedTask()),
                          # fp32: embeddings are compared across runs and machines, never bf16 by a timing.
                          precision="fp32")
    outputs = embedding_outputs(out, overwrite, meta["dim"])
    outputs.refuse_inputs(sources, source if Path(source).is_file() else None)
    stats = outputs.write(predictor.run, iter_sources(sources), sources)
    if not outputs.files:
        return {**stats, "dim": meta["dim"]}
    rows = stats["images"] - stats["errors"]  # unreadable images are not rows
    npy, index = outputs.files
    info(f"wrote {rows} x {meta['dim']} embeddings to {npy.path} and their paths to {index.path}")
    return {**stats, "dim": meta["dim"], "rows": rows}
