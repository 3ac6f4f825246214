"""Pooled backbone features ("embeddings") for every image, for retrieval and clustering.

The model is a checkpoint's backbone (any task) or a bare backbone with its
ImageNet weights; images stream through the shared Predictor (same decoding,
resizing and normalisation as `predict`), and each record is written as soon
as its batch is done: jsonl lines, or rows of a .npy file whose paths go to an
index file, line i naming row i.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visiontk.backbones.base import Backbone
from visiontk.console import info, warn
from visiontk.data.preprocess import Preprocess
from visiontk.errors import UserError
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

    def postprocess(self, outputs, metas, options) -> Iterable[dict]:
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


class JsonlEmbeddingWriter:
    def __init__(self, stream: IO[str], decimals: int = 6):
        import json

        self.stream, self.json, self.decimals = stream, json, decimals

    def __call__(self, record: dict) -> None:
        if "embedding" in record:
            record = {**record, "embedding": [round(float(x), self.decimals) for x in record["embedding"]]}
        self.stream.write(self.json.dumps(record) + "\n")

    def close(self) -> None:
        pass


class NpyEmbeddingWriter:
    """Rows go to a temporary raw file as they come (memory stays flat for any
    number of images); `close` prepends the .npy header, now that the row count is
    known, and writes the index file of paths."""

    def __init__(self, path: Path, dim: int, index_path: Path):
        self.path, self.dim, self.index_path = path, dim, index_path
        self.raw_path = path.with_name(f".{path.name}.part")
        self.idx_tmp = index_path.with_name(f".{index_path.name}.part")
        self.raw = open(self.raw_path, "wb")
        self.index = open(self.idx_tmp, "w", encoding="utf-8")
        self.rows = 0

    def __call__(self, record: dict) -> None:
        if "embedding" not in record:
            return  # unreadable image: warned about by the predictor, not a row
        self.raw.write(np.asarray(record["embedding"], dtype="<f4").tobytes())
        self.index.write(record["path"].replace("\n", " ") + "\n")
        self.rows += 1

    def close(self) -> None:
        self.raw.close()
        self.index.close()
        header = {"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.dim)}
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "wb") as out, open(self.raw_path, "rb") as raw:
            np.lib.format.write_array_header_1_0(out, header)
            while block := raw.read(1 << 20):
                out.write(block)
        os.replace(tmp, self.path)
        os.replace(self.idx_tmp, self.index_path)
        self.raw_path.unlink(missing_ok=True)

    def abort(self) -> None:
        for f in (self.raw, self.index):
            f.close()
        self.raw_path.unlink(missing_ok=True)
        self.idx_tmp.unlink(missing_ok=True)


def index_path_for(npy: Path) -> Path:
    return npy.with_suffix(".paths.txt")


def run_embed(source: str, sources: list[str], out: str | None, overwrite: bool = False, pretrained: str | None = None,
              image_size: int | None = None, pool: str = "avg", normalize: bool = False, device: str = "auto",
              batch_size: int = 32, workers: int = 2) -> dict:
    from visiontk.data.sources import iter_sources
    from visiontk.engine.predictor import Predictor

    embedder, meta = load_embedder(source, pretrained, image_size, pool, normalize)
    info(f"embedding with {meta['source']}: {meta['dim']}-d {pool}-pooled features at "
         f"{meta['input_size'][0]}x{meta['input_size'][1]}")
    predictor = Predictor(None, None, device=device, batch_size=batch_size, workers=workers,
                          loaded=(embedder, meta, EmbedTask()))
    paths = iter_sources(sources)
    if out in (None, "-"):
        writer = JsonlEmbeddingWriter(sys.stdout)
        stats = predictor.run(paths, writer)
        sys.stdout.flush()
        return {**stats, "dim": meta["dim"]}
    path = Path(out)
    if path.suffix != ".npy":
        raise UserError(f"{path}: --out must end in .npy (or be - for jsonl on stdout)")
    index = index_path_for(path)
    for p in (path, index):
        if p.exists() and not overwrite:
            raise UserError(f"{p}: output file exists (use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = NpyEmbeddingWriter(path, meta["dim"], index)
    try:
        stats = predictor.run(paths, writer)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    info(f"wrote {writer.rows} x {meta['dim']} embeddings to {path} and their paths to {index}")
    return {**stats, "dim": meta["dim"], "rows": writer.rows}
