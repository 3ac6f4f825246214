"""Backbones over token ids: the Kim (2014) sentence CNN and a bag-of-words baseline.

Input: [N, T] int64 token ids (data/text.py; 0 pads). The vocabulary comes
from the data (`vocab`, given by the model builder); pretrained word vectors
(word2vec or GloVe text format) are loaded with `model.pretrained: FILE`.
One feature map, stride 1 (per token): the classify head pools it over time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from visiontk.backbones.base import Backbone
from visiontk.backbones.registry import register_backbone
from visiontk.errors import UserError

PROBE_TOKENS = 16
# A vocabulary for `backbones list` (which builds every backbone without data).
_PLACEHOLDER_VOCAB = ("<pad>", "<unk>")
WORD_VECTOR_SUFFIXES = (".txt", ".vec")


class TextBackbone(Backbone):
    dims = 1

    def __init__(self, name: str, body: nn.Sequential, vocab: Sequence[str]):
        """`body` starts with the token embedding."""
        self.vocab = tuple(vocab)
        super().__init__(name, body, in_channels=1, probe_size=PROBE_TOKENS)

    @property
    def embedding(self) -> nn.Embedding:
        return self.body[0]

    def stage_modules(self) -> list[nn.Module]:
        return [self.body]

    @torch.no_grad()
    def _probe(self, size: int) -> tuple[list[int], list[int]]:
        was_training = self.training
        self.eval()
        feats = self.forward(torch.zeros(1, size, dtype=torch.long))
        self.train(was_training)
        return [f.shape[1] for f in feats], [max(1, size // f.shape[-1]) for f in feats]

    def forward(self, ids: torch.Tensor) -> list[torch.Tensor]:
        return [self.body(ids.long())]

    def load_word_vectors(self, path: Path) -> dict:
        """Copy the vectors of the vocabulary's tokens found in a word2vec / GloVe text file
        into the embedding; returns what `load_pretrained` returns."""
        from visiontk.console import info, plural
        from visiontk.data.regular_files import open_regular

        weight = self.embedding.weight
        index = {t: i for i, t in enumerate(self.vocab)}
        found = 0
        with open_regular(path) as raw:
            for number, line in enumerate(raw, 1):
                parts = line.decode("utf-8", errors="replace").rstrip().split(" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec's "count dim" header
                if len(parts) < 2:
                    continue
                row = index.get(parts[0])
                if row is None or row < 2:
                    continue
                if len(parts) - 1 != weight.shape[1]:
                    raise UserError(f"{path}:{number}: vectors of {len(parts) - 1} values, the embedding has "
                                    f"{weight.shape[1]} (model.backbone_options.embed_dim)")
                try:
                    values = torch.tensor([float(v) for v in parts[1:]])
                except ValueError:
                    raise UserError(f"{path}:{number}: not a word-vector line") from None
                with torch.no_grad():
                    weight[row] = values
                found += 1
        info(f"word vectors: {found} of {plural(len(self.vocab) - 2, 'vocabulary token')} found in {path}")
        return {"kind": "file", "name": str(path), "file": str(path), "state": None}


def _embedding(vocab: Sequence[str], embed_dim: int) -> nn.Embedding:
    if not isinstance(embed_dim, int) or embed_dim < 1:
        raise TypeError("embed_dim must be an integer >= 1")
    return nn.Embedding(len(vocab), embed_dim, padding_idx=0)


class _Transpose(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)  # [N, T, D] -> [N, D, T]


class KimConvs(nn.Module):
    """One convolution over time per filter width, ReLU; the maps concatenated on channels.

    Each width gives T - width + 1 positions; the shorter maps are padded with
    zeros to the longest, which max-over-time pooling never picks over a ReLU
    output (>= 0), so max pooling the concatenation is Kim's per-filter max.
    """

    def __init__(self, embed_dim: int, filters: int, widths: Sequence[int]):
        super().__init__()
        self.widths = list(widths)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, filters, w) for w in self.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < max(self.widths):
            x = F.pad(x, (0, max(self.widths) - x.shape[-1]))
        maps = [F.relu(conv(x)) for conv in self.convs]
        longest = max(m.shape[-1] for m in maps)
        return torch.cat([F.pad(m, (0, longest - m.shape[-1])) for m in maps], dim=1)


@register_backbone("kim_cnn", description="Kim (2014) sentence CNN: embeddings, convolutions of widths 3/4/5 "
                                          "over time (text; with head pool: max, dropout 0.5)",
                   mean=(0.0,), std=(1.0,), in_channels=1)
def kim_cnn(in_channels: int = 1, vocab: Sequence[str] = _PLACEHOLDER_VOCAB, embed_dim: int = 128,
            filters: int = 100, widths: Sequence[int] = (3, 4, 5)) -> Backbone:
    widths = list(widths)
    if not widths or not all(isinstance(w, int) and w >= 1 for w in widths) or not isinstance(filters, int) or filters < 1:
        raise TypeError("widths must be a non-empty list of integers >= 1, filters an integer >= 1")
    embedding = _embedding(vocab, embed_dim)
    body = nn.Sequential(embedding, _Transpose(), KimConvs(embed_dim, filters, widths))
    return TextBackbone("kim_cnn", body, vocab)


@register_backbone("text_bow", description="bag of words: the token embeddings alone, no order "
                                           "(text; the baseline of kim_cnn)",
                   mean=(0.0,), std=(1.0,), in_channels=1)
def text_bow(in_channels: int = 1, vocab: Sequence[str] = _PLACEHOLDER_VOCAB, embed_dim: int = 128) -> Backbone:
    embedding = _embedding(vocab, embed_dim)
    return TextBackbone("text_bow", nn.Sequential(embedding, _Transpose()), vocab)
