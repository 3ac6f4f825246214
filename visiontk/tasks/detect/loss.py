"""YOLO-v1 sum-squared-error loss (Redmon et al. 2016, eq. 3), fully vectorised."""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from visiontk.tasks.detect.encode import TARGET_BOX, TARGET_CLS, TARGET_OBJ, decode_grid_boxes


def paired_box_iou(a: Tensor, b: Tensor, eps: float = 1e-9) -> Tensor:
    """IoU of corresponding ``xyxy`` boxes (broadcasting ``[..., 4]``), not all pairs.

    torchvision's `box_iou` is pairwise ([N, M]); here every predictor is only
    compared with the target of its own cell, so an elementwise IoU avoids an
    S*S*B x S*S matrix.
    """
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(dim=-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(dim=-1)
    return inter / (area_a + area_b - inter + eps)


class YoloV1Loss(nn.Module):
    """Loss of activated head output ``[N, S, S, B*5 + C]`` against encoded targets ``[N, S, S, 5 + C]``.

    Terms (summed over the grid, averaged over the batch; the returned
    components are already weighted and add up to the loss):

    * coord: lambda_coord * [(x - x*)^2 + (y - y*)^2 + (sqrt_w - sqrt(w*))^2 + (sqrt_h - sqrt(h*))^2]
      for the responsible box of each object cell;
    * obj:   (conf - t)^2 for the responsible box, t = 1 (``obj_target='one'``,
      default: a fixed target is more stable on tiny data and early in
      training, when IoUs are near 0) or t = IoU(pred, target) detached
      (``'iou'``, the paper's choice: conf then estimates localisation quality);
    * noobj: lambda_noobj * conf^2 for every other predictor -- the non-
      responsible boxes of object cells and all boxes of empty cells;
    * cls:   sum_c (p_c - p*_c)^2 in object cells only (on probabilities).

    The responsible box of a cell is the one of its B predictors whose decoded
    box has the highest IoU with the target (ties -> the lower index, as
    ``argmax`` returns the first maximum). It is chosen without gradient.
    """

    def __init__(
        self,
        S: int,
        B: int,
        C: int,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        obj_target: Literal["one", "iou"] = "one",
    ) -> None:
        super().__init__()
        if obj_target not in ("one", "iou"):
            raise ValueError(f"YoloV1Loss: obj_target must be 'one' or 'iou', got {obj_target!r}")
        self.S, self.B, self.C = S, B, C
        self.lambda_coord = float(lambda_coord)
        self.lambda_noobj = float(lambda_noobj)
        self.obj_target = obj_target

    def forward(self, pred: Tensor, target: Tensor) -> tuple[Tensor, dict[str, float]]:
        S, B, C = self.S, self.B, self.C
        if pred.shape[1:] != (S, S, B * 5 + C):
            raise ValueError(f"YoloV1Loss: pred must be [N, {S}, {S}, {B * 5 + C}], got {tuple(pred.shape)}")
        if target.shape != (*pred.shape[:3], 5 + C):
            raise ValueError(f"YoloV1Loss: target must be [N, {S}, {S}, {5 + C}], got {tuple(target.shape)}")
        n = pred.shape[0]
        target = target.to(pred.dtype)

        boxes = pred[..., : B * 5].reshape(*pred.shape[:3], B, 5)  # [N, S, S, B, 5]
        pred_xy, pred_sqrt_wh, conf = boxes[..., 0:2], boxes[..., 2:4], boxes[..., 4]
        probs = pred[..., B * 5 :]

        t_box = target[..., TARGET_BOX]  # [N, S, S, 4] x, y, w, h
        obj = target[..., TARGET_OBJ]  # [N, S, S]
        t_cls = target[..., TARGET_CLS:]

        with torch.no_grad():
            pred_cell = torch.cat([pred_xy, pred_sqrt_wh.square()], dim=-1)
            pred_xyxy = decode_grid_boxes(pred_cell, "xyxy", per_box=True)  # [N, S, S, B, 4]
            t_xyxy = decode_grid_boxes(t_box, "xyxy").unsqueeze(-2)  # [N, S, S, 1, 4]
            iou = paired_box_iou(pred_xyxy, t_xyxy)  # [N, S, S, B]
            best = iou.argmax(dim=-1)
            resp = nn.functional.one_hot(best, B).to(pred.dtype) * obj.unsqueeze(-1)  # [N, S, S, B]
            if self.obj_target == "one":
                conf_target = torch.ones_like(conf)
            else:
                conf_target = iou

        # sqrt of the *target* only (>= 0 by construction); the prediction is
        # already a square root, so no sqrt of a network output anywhere.
        t_xy = t_box[..., 0:2].unsqueeze(-2)
        t_sqrt_wh = t_box[..., 2:4].clamp(min=0).sqrt().unsqueeze(-2)
        coord_err = (pred_xy - t_xy).square().sum(-1) + (pred_sqrt_wh - t_sqrt_wh).square().sum(-1)

        coord = self.lambda_coord * (resp * coord_err).sum()
        obj_loss = (resp * (conf - conf_target).square()).sum()
        noobj = self.lambda_noobj * ((1.0 - resp) * conf.square()).sum()
        cls = (obj * (probs - t_cls).square().sum(-1)).sum()

        denom = max(n, 1)
        parts = {"coord": coord / denom, "obj": obj_loss / denom, "noobj": noobj / denom, "cls": cls / denom}
        loss = parts["coord"] + parts["obj"] + parts["noobj"] + parts["cls"]
        return loss, {k: float(v.detach()) for k, v in parts.items()}
