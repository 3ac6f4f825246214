"""YOLO-v1 detection: head, target encoding, loss, decoding, COCO mAP, data formats, dataset.

Modules (import the heavier ones -- formats, dataset, coco_eval, metric -- directly;
they pull in PIL/albumentations/pycocotools/matplotlib):

* head:      YoloV1Head, activate, grid_size_for
* encode:    encode_targets, encode_batch, decode_grid_boxes
* loss:      YoloV1Loss
* decode:    decode_predictions, grid_to_boxes, scale_to_pixels
* coco_eval: evaluate_coco, plot_pr_curve
* metric:    DetectionMetric (the task's metric: per-image results, gathered across ranks), detection_report
* formats:   data.options per format, read_split (records from visiontk.data.formats)
* dataset:   DetectionDataset, collate_detection, detection_bbox_params
"""
from visiontk.tasks.detect.decode import decode_predictions, grid_to_boxes, scale_to_pixels
from visiontk.tasks.detect.encode import decode_grid_boxes, encode_batch, encode_targets
from visiontk.tasks.detect.head import YoloV1Head, activate, grid_size_for
from visiontk.tasks.detect.loss import YoloV1Loss

__all__ = [
    "YoloV1Head",
    "YoloV1Loss",
    "activate",
    "decode_grid_boxes",
    "decode_predictions",
    "encode_batch",
    "encode_targets",
    "grid_size_for",
    "grid_to_boxes",
    "scale_to_pixels",
]
