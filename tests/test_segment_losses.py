"""Cross-entropy and soft Dice: ignore_index, class weights, hand-computed Dice."""
import pytest
import torch
import torch.nn.functional as F

from visiontk.errors import UserError
from visiontk.tasks.segment.losses import SegmentationLoss, soft_dice_loss


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is faster on a shared CPU


def _batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 5))
    target[0, 0, :3] = 255
    target[1, 2, 1] = 255
    return logits, target


def test_ce_ignores_ignore_index_pixels():
    logits, target = _batch()
    loss, parts = SegmentationLoss("ce")(logits, target)
    valid = target != 255
    per_pixel = -logits.log_softmax(1).gather(1, target.clamp(max=2)[:, None])[:, 0]
    assert loss.item() == pytest.approx(per_pixel[valid].mean().item(), rel=1e-6)
    assert parts == {"ce": pytest.approx(loss.item()), "loss": pytest.approx(loss.item())}
    loss.backward()
    grad = logits.grad.abs().sum(1)
    assert (grad[~valid] == 0).all() and (grad[valid] > 0).all()


def test_ce_class_weights():
    logits, target = _batch()
    w = [1.0, 2.0, 0.5]
    loss, _ = SegmentationLoss("ce", class_weights=w)(logits, target)
    valid = target != 255
    t = target[valid]
    nll = -logits.log_softmax(1).permute(0, 2, 3, 1)[valid].gather(1, t[:, None])[:, 0]
    wt = torch.tensor(w)[t]
    assert loss.item() == pytest.approx(((wt * nll).sum() / wt.sum()).item(), rel=1e-6)


def test_dice_by_hand():
    # uniform probabilities 0.5; targets 0, 0, 1 and one ignored pixel; smooth 1
    logits = torch.zeros(1, 2, 1, 4)
    target = torch.tensor([[[0, 0, 1, 255]]])
    # class 0: inter 1.0, sum p 1.5 + sum g 2 -> (2+1)/(3.5+1) = 2/3
    # class 1: inter 0.5, sum p 1.5 + sum g 1 -> (1+1)/(2.5+1) = 4/7
    expected = 1 - (2 / 3 + 4 / 7) / 2
    assert soft_dice_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # a third class absent from the target is left out of the mean
    logits3 = torch.cat([logits, torch.full((1, 1, 1, 4), -1e4)], dim=1)
    assert soft_dice_loss(logits3, target).item() == pytest.approx(expected, rel=1e-6)
    # changing the logits of the ignored pixel changes nothing
    logits3[0, :, 0, 3] = torch.tensor([-5.0, 9.0, 3.0])
    assert soft_dice_loss(logits3, target).item() == pytest.approx(expected, rel=1e-6)


def test_dice_is_near_zero_for_a_perfect_prediction():
    target = torch.tensor([[[0, 1, 2], [2, 255, 0]]])
    logits = 50.0 * F.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float()
    logits[0, :, 1, 1] = torch.tensor([0.0, 0.0, 50.0])  # wrong, but ignored
    loss, parts = SegmentationLoss("dice")(logits, target)
    assert loss.item() < 1e-6 and set(parts) == {"dice", "loss"}


def test_ce_plus_dice_and_all_ignored_batches():
    logits, target = _batch()
    loss, parts = SegmentationLoss("ce+dice", dice_weight=0.5)(logits, target)
    assert loss.item() == pytest.approx(parts["ce"] + 0.5 * parts["dice"], rel=1e-6)
    assert all(isinstance(v, float) for v in parts.values())
    ignored = torch.full_like(target, 255)
    loss, parts = SegmentationLoss("ce+dice")(logits, ignored)
    assert loss.item() == 0.0 and parts["ce"] == 0.0 and parts["dice"] == 0.0
    loss.backward()  # still part of the graph, no NaN
    assert torch.isfinite(logits.grad).all()


def test_rejects_bad_configuration():
    with pytest.raises(UserError):
        SegmentationLoss("focal")
    logits, target = _batch()
    with pytest.raises(UserError, match="class_weights"):
        SegmentationLoss("ce", class_weights=[1.0, 2.0])(logits, target)


class _TensorOps(torch.overrides.TorchFunctionMode):
    """The names of the torch functions and tensor methods called inside the block."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def test_ce_reads_the_mask_once_on_a_labelled_batch():
    # The all-ignored check used to compare the whole mask with 255 and reduce it on every
    # step (a second pass over it, ~1 ms of a tinycnn U-Net step); it is made only when the
    # mean came out NaN. The mask is then read by cross_entropy alone.
    logits, target = _batch()
    with _TensorOps() as ops:
        loss, _ = SegmentationLoss("ce")(logits, target)
    assert "cross_entropy" in ops.names
    assert not {"__ne__", "ne", "any"} & set(ops.names), ops.names
    assert torch.isfinite(loss)


def test_ce_of_nan_logits_on_labelled_pixels_stays_nan_for_the_trainer_to_see():
    logits, target = _batch()
    nan_logits = logits.detach().clone()
    nan_logits[0, :, 3, 4] = float("nan")
    loss, parts = SegmentationLoss("ce")(nan_logits, target)
    assert torch.isnan(loss) and parts["ce"] != parts["ce"]
    # All ignored: 0, even when the mean would be NaN (0 / 0).
    loss, parts = SegmentationLoss("ce", class_weights=[1.0, 2.0, 0.5])(logits, torch.full_like(target, 255))
    assert loss.item() == 0.0 and parts["ce"] == 0.0
