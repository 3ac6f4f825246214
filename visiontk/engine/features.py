"""The activations of one named layer of a checkpoint's model, for one image."""
from __future__ import annotations

import difflib
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from visiontk.backbones.layer_trace import LayerTrace, Op
from visiontk.backbones.receptive_field import ReceptiveFields
from visiontk.data.preprocess import Preprocess
from visiontk.engine.build import model_from_checkpoint
from visiontk.errors import UserError
from visiontk.outputs.output_folder import OutputFolder
from visiontk.viz.feature_grid import tile_channels


class _LastOutput:
    """Op callback: the last tensor computed from the input inside each module (by name, any call)."""

    def __init__(self, fields: ReceptiveFields):
        self.fields = fields  # tells tensors computed from the input from those of weights alone
        self.outputs: dict[str, torch.Tensor] = {}

    def __call__(self, op: Op) -> None:
        output = next((y for y in op.outputs if self.fields.of(y) is not None), None)
        if output is not None:
            for scope in op.scopes:
                self.outputs[scope.name] = output


def layer_activation(model: nn.Module, x: torch.Tensor, layer: str, source: str = "model") -> torch.Tensor:
    """The output of module `layer` (a name as `visiontk model summary` prints it) for
    the batch `x`. Blocks of torchvision backbones are never called as modules; the
    trace knows their ops, so any name of the summary works."""
    fields = ReceptiveFields()
    fields.seed(x)
    seen = _LastOutput(fields)
    with torch.no_grad():
        LayerTrace(model, [fields, seen]).run(x)
    if layer not in seen.outputs:
        names = list(seen.outputs)
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.6) or \
            [n for n in names if n.endswith(layer) or layer in n][:5]
        hint = f"; close: {', '.join(close)}" if close else ""
        raise UserError(f"{source}: --layer '{layer}' is not a layer of this model{hint} "
                        f"(see 'visiontk model summary {source}')")
    return seen.outputs[layer]


def write_feature_maps(checkpoint: str, image: str, layer: str, out: str) -> dict:
    """Write `<out>/<image stem>.<layer>.png`: the layer's activation maps for `image`."""
    folder = OutputFolder(out, "--out", keep_existing=True)
    folder.refuse_inputs([Path(image), Path(checkpoint)], [])
    model, ckpt = model_from_checkpoint(checkpoint)
    preprocess = Preprocess.from_checkpoint(ckpt)
    x = preprocess(image)[None]
    act = layer_activation(model, x, layer, checkpoint)
    if act.dim() != 4:
        raise UserError(f"{checkpoint}: --layer '{layer}' gives a {list(act.shape[1:])} tensor, not feature maps "
                        f"(channels x height x width); choose a convolutional layer or block")
    canvas, layout = tile_channels(act[0].float().numpy())
    path = folder.path_for(image, f".{layer}.png")
    Image.fromarray(canvas).save(path)
    return {"png": str(path), "layer": layer, "image": str(image), "shape": list(act.shape[1:]), **layout.to_dict()}
