"""Output that scales with the number of classes (issue 13, item 5)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from visiontk.tasks.segment.common import label_map


def test_130_class_upsampling_keeps_the_opencv_path_and_gives_torch_labels(monkeypatch):
    """OpenCV takes at most 128 channels: 130 classes are resized in slices, and the labels are
    exactly those of torch's bilinear resize + argmax. Integer logits and a x4 scale make every
    interpolation weight a power-of-two fraction, so both sums are exact and so are their ties
    (which must go to the first class, as argmax does)."""
    import visiontk.tasks.segment.outputs as outputs

    g = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 12, (130, 6, 8), generator=g).float()
    logits[129, 0, 0] = logits[3, 0, 0] = 40.0  # a tie across slices at the corner: class 3 wins
    logits[128, 5, 7] = 50.0  # a winner in the second slice
    calls = []
    real_resize = outputs.cv2.resize

    def counting_resize(a, *args, **kwargs):
        calls.append(a.shape[2] if a.ndim == 3 else 1)
        return real_resize(a, *args, **kwargs)

    monkeypatch.setattr(outputs.cv2, "resize", counting_resize)
    got = outputs.full_size_labels(logits, (24, 32))
    assert calls == [128, 2]  # the fast path, in two slices; not torch's fallback
    up = F.interpolate(logits[None], size=(24, 32), mode="bilinear", align_corners=False)[0]
    want = label_map(up, 0).numpy()
    assert got.dtype == np.uint8 and got.shape == (24, 32)
    assert np.array_equal(got, want)
    assert got[0, 0] == 3 and got[23, 31] == 128 and (got >= 128).sum() > 0
