"""Semantic segmentation: FCN and U-Net decoders, losses, metrics, data, tiling.

Pure modules, independent of the trainer and CLI (the confusion matrix under
the metric is visiontk.metrics.confusion, shared with classify): a decoder
consumes the backbone contract (``forward(x) -> list[Tensor]``, ``out_channels``,
``strides``) and returns logits at stride 1.
"""
from .dataset import SegmentationDataset
from .fcn import FCNDecoder
from .losses import SegmentationLoss, soft_dice_loss
from .metrics import SegmentationMetric
from .model import SegmentationModel, build_decoder
from .readers import SegmentationRecord, load_mask
from .tiling import predict_tiled
from .unet import ClassicUNet, UNetDecoder
from .upsample import BilinearConvTranspose2d, bilinear_kernel

__all__ = [
    "BilinearConvTranspose2d",
    "ClassicUNet",
    "FCNDecoder",
    "SegmentationDataset",
    "SegmentationLoss",
    "SegmentationMetric",
    "SegmentationModel",
    "SegmentationRecord",
    "UNetDecoder",
    "bilinear_kernel",
    "build_decoder",
    "load_mask",
    "predict_tiled",
    "soft_dice_loss",
]
