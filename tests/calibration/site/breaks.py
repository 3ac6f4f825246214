"""Deliberate breaks of the code, to prove that an outcome test's threshold fails
when the code is wrong (what ../../shared/notes/calibration.md measured on a
prototype, here on visiontk itself). Each is a patch applied at interpreter
start by sitecustomize.py; none exists in the product."""
from __future__ import annotations

import sys


def _replace_everywhere(original, replacement) -> None:
    """Point every loaded visiontk module's name for `original` at `replacement`
    (modules that imported the function by name hold their own reference)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("visiontk") and module is not None:
            for attr, value in list(vars(module).items()):
                if value is original:
                    setattr(module, attr, replacement)


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

    import visiontk.tasks.detect.decode  # noqa: F401 - loaded, so its reference is replaced too
    import visiontk.tasks.detect.encode as encode
    import visiontk.tasks.detect.loss  # noqa: F401

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

    _replace_everywhere(decode, decode_grid_boxes)


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


def _segment_labels_shuffled() -> None:
    import torch

    from visiontk.tasks.segment.losses import SegmentationLoss

    forward = SegmentationLoss.forward

    def shuffled(self, logits, target, *args, **kwargs):
        # Each pixel scored against another pixel's label: the loss no longer says where things are.
        flat = target.reshape(target.shape[0], -1)
        order = torch.randperm(flat.shape[1])
        return forward(self, logits, flat[:, order].reshape(target.shape), *args, **kwargs)

    SegmentationLoss.forward = shuffled


def _pretrained_not_loaded() -> None:
    import visiontk.backbones.pretrained as pretrained
    import visiontk.backbones.imagenet  # noqa: F401 - loaded, so their references are replaced too
    import visiontk.engine.build  # noqa: F401

    _replace_everywhere(pretrained.load_backbone_weights,
                        lambda backbone, state, source: pretrained._strip_to_backbone(state, backbone))
    _replace_everywhere(pretrained.load_head_weights, lambda model, state, source: 0)


def _bf16_noop() -> None:
    import torch

    import visiontk.engine.device as device

    import visiontk.engine.predictor  # noqa: F401

    amp_dtype = device.amp_dtype
    _replace_everywhere(amp_dtype, lambda dev, amp: None if amp_dtype(dev, amp) == torch.bfloat16 else amp_dtype(dev, amp))


def _kim_order_lost() -> None:
    from visiontk.backbones.registry import get_backbone_spec

    import functools

    # Every Kim filter one word wide: the CNN becomes a bag of words.
    spec = get_backbone_spec("kim_cnn")
    build = spec.builder

    @functools.wraps(build)  # the same signature: the builder still gets the vocabulary
    def one_word_wide(**kw):
        return build(**{**kw, "widths": [1, 1, 1]})

    spec.builder = one_word_wide


def _cam_negated_gradients() -> None:
    import visiontk.engine.cam  # noqa: F401 - loaded, so its reference is replaced too
    import visiontk.viz.cam as cam

    grad_cam = cam.grad_cam
    # The gradients' sign flipped (a score minimised instead of explained): the map
    # then shows where the evidence for the class is weakest.
    _replace_everywhere(grad_cam, lambda model, x, score: grad_cam(model, x, lambda o: -score(o)))


BREAKS = {
    "classify-shuffled-labels": _classify_shuffled_labels,
    "detect-no-cell-offset": _detect_no_cell_offset,
    "fcn-zero-upsampler": _fcn_zero_upsampler,
    "unet-no-skips": _unet_no_skips,
    "segment-labels-shuffled": _segment_labels_shuffled,
    "pretrained-not-loaded": _pretrained_not_loaded,
    "bf16-noop": _bf16_noop,
    "kim-order-lost": _kim_order_lost,
    "cam-negated-gradients": _cam_negated_gradients,
}


def apply(name: str) -> None:
    BREAKS[name]()
