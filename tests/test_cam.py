"""`predict --cam`: Grad-CAM overlays, and a map that points where the object is."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import run_cli

from visiontk.data.synth import CLASSES, Shape, _pick_colour, make_background, shape_mask

SIZE = 64
# Quadrant centres (x, y) at 64 px: top-left, top-right, bottom-left, bottom-right.
QUADRANTS = [(16, 16), (48, 16), (16, 48), (48, 48)]


def one_object_images(folder: Path) -> dict[str, int]:
    """One shape of each class in each quadrant (side 20 px: inside its 32 px quadrant),
    on the synthetic set's kind of background; {file name: quadrant index}."""
    folder.mkdir(parents=True, exist_ok=True)
    where = {}
    for cls in range(len(CLASSES)):
        for q, (cx, cy) in enumerate(QUADRANTS):
            rng = np.random.default_rng([7, cls, q])
            canvas = make_background(rng, SIZE)
            mask = shape_mask(Shape(cls, float(cx), float(cy), 20.0, float(rng.uniform(0, 6.28))), SIZE)
            canvas[mask] = _pick_colour(rng, canvas[mask])
            noisy = canvas + 3.0 * rng.standard_normal(canvas.shape)
            name = f"{CLASSES[cls]}-q{q}.png"
            Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8)).save(folder / name)
            where[name] = q
    return where


def quadrant(x: float, y: float) -> int:
    return int(x >= SIZE / 2) + 2 * int(y >= SIZE / 2)


@pytest.mark.outcome
def test_cam_peak_lies_in_the_objects_quadrant(trained_classifier, tmp_path, outcome):
    where = one_object_images(tmp_path / "images")
    result = run_cli("classify", "predict", trained_classifier / "best.pt", tmp_path / "images",
                     "--cam", tmp_path / "cams")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == len(where)
    hits = 0
    for r in records:
        overlay = Image.open(r["cam"])
        assert overlay.size == (SIZE, SIZE) and Path(r["cam"]).parent == tmp_path / "cams"
        assert r["cam_class"] == r["label"]  # the top-1 class is the one explained
        hits += r["cam_peak"] is not None and quadrant(*r["cam_peak"]) == where[Path(r["path"]).name]
    outcome(cam_quadrant_hits=hits, images=len(records))
    # Calibration (see the numbers below): 12 of 12 under every setting and seed.
    assert hits >= 11, f"{hits} of {len(records)} CAM maxima in the object's quadrant"
