"""Deliberate breaks of the code, to prove that an outcome test's threshold fails
when the code is wrong (what ../../shared/notes/calibration.md measured on a
prototype, here on visiontk itself). Each is a patch applied at interpreter
start by sitecustomize.py; none exists in the product."""
from __future__ import annotations


def _classify_shuffled_labels() -> None:
    import torch

    from visiontk.tasks.classify import ClassifyTask

    build = ClassifyTask.build_loss

    def build_loss(self, recipe, num_classes):
        loss_fn = build(self, recipe, num_classes)
        return lambda logits, labels: loss_fn(logits, labels[torch.randperm(len(labels))])

    ClassifyTask.build_loss = build_loss


def _detect_no_cell_offset() -> None:
    import torch

    import visiontk.tasks.detect.encode as encode

    decode = encode.decode_grid_boxes

    def decode_grid_boxes(cell_boxes, out_fmt="cxcywh", per_box=False):
        # As if the cell's column/row were never added: every box lands in cell (0, 0).
        grid_dim = -4 if per_box else -3
        S = cell_boxes.shape[grid_dim]
        shifted = cell_boxes.clone()
        steps = torch.arange(S, dtype=cell_boxes.dtype)
        trailing = (1,) if per_box else ()
        shifted[..., 0] -= steps.view(S, *trailing)
        shifted[..., 1] -= steps.view(S, 1, *trailing)
        return decode(shifted, out_fmt, per_box)

    encode.decode_grid_boxes = decode_grid_boxes


def _fcn_zero_upsampler() -> None:
    import torch

    from visiontk.tasks.segment.upsample import BilinearConvTranspose2d

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.zero_()

    BilinearConvTranspose2d.reset_parameters = reset_parameters


def _unet_no_skips() -> None:
    import torch

    from visiontk.tasks.segment.unet import DecoderStage

    forward = DecoderStage.forward
    DecoderStage.forward = lambda self, x, skip: forward(self, x, None if skip is None else torch.zeros_like(skip))


def _pretrained_not_loaded() -> None:
    import visiontk.backbones.pretrained as pretrained

    pretrained.load_backbone_weights = lambda backbone, state, source: pretrained._strip_to_backbone(state, backbone)
    pretrained.load_head_weights = lambda model, state, source: 0


def _bf16_noop() -> None:
    import torch

    import visiontk.engine.device as device

    amp_dtype = device.amp_dtype
    device.amp_dtype = lambda dev, amp: None if amp_dtype(dev, amp) == torch.bfloat16 else amp_dtype(dev, amp)


BREAKS = {
    "classify-shuffled-labels": _classify_shuffled_labels,
    "detect-no-cell-offset": _detect_no_cell_offset,
    "fcn-zero-upsampler": _fcn_zero_upsampler,
    "unet-no-skips": _unet_no_skips,
    "pretrained-not-loaded": _pretrained_not_loaded,
    "bf16-noop": _bf16_noop,
}


def apply(name: str) -> None:
    BREAKS[name]()
