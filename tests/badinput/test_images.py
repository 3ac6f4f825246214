"""Odd and broken image files given to `classify predict` (one real process for the whole corpus).

Unreadable files: an error record naming the file, a one-line warning, the
other images predicted, exit 1. Readable but unusual files (grey, RGBA,
palette, 16-bit, CMYK, EXIF-rotated, 1x1, 12000x12000, odd names): predicted
exactly like the equivalent plain 8-bit RGB image.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visiontk.data.images import MAX_PIXELS, load_image, load_image_sized

from .support import (
    assert_error,
    invoke,
    pattern_image,
    warnings_of,
    write_blank_png,
    write_corrupt_exif,
    write_exif_rotated,
    write_truncated,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("image-corpus")
    base = pattern_image()
    grey = base.convert("L")
    files: dict[str, Path] = {}

    def put(name: str, img: Image.Image | None = None, data: bytes | None = None, **kw) -> None:
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            path.write_bytes(data)
        else:
            img.save(path, **kw)
        files[name] = path

    put("empty.jpg", data=b"")
    files["truncated.jpg"] = write_truncated(d / "truncated.jpg", "JPEG")
    files["truncated.png"] = write_truncated(d / "truncated.png", "PNG")
    put("text.jpg", data=b"this is a text file, not a JPEG\n")
    put("base.png", base)
    put("grey.png", grey)
    put("grey-as-rgb.png", grey.convert("RGB"))
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (40, 1))))
    put("rgba.png", rgba)
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    put("palette.png", palette)
    put("palette-as-rgb.png", palette.convert("RGB"))
    put("grey16.png", Image.fromarray(np.asarray(grey).astype(np.uint16) * 257))
    put("cmyk.jpg", base.convert("CMYK"), quality=95)
    upright = pattern_image(48, 40, seed=1)
    files["exif-rotated.jpg"] = write_exif_rotated(d / "exif-rotated.jpg", upright)
    # The reference: the same decoded pixels, turned upright by hand, stored losslessly;
    # and the stored pixels without the EXIF tag (what a reader ignoring EXIF sees).
    stored = Image.open(files["exif-rotated.jpg"])
    put("exif-upright.png", stored.transpose(Image.Transpose.ROTATE_270))
    put("exif-stripped.png", stored.convert("RGB"))
    put("one-pixel.png", Image.new("RGB", (1, 1), (200, 30, 90)))
    put("solid-32.png", Image.new("RGB", (32, 32), (200, 30, 90)))
    # 144 MP but highly compressible (1.7 MB); decoded at 1/8 scale by the JPEG draft mode.
    put("huge-12000.jpg", Image.new("L", (12000, 12000), 128), quality=50)
    put("grey128-32.png", Image.new("RGB", (32, 32), (128, 128, 128)))
    files["too-large.png"] = write_blank_png(d / "too-large.png", 15000, 15000)  # 225 MP > MAX_PIXELS
    put("dir with spaces ünïcødé/ímage 1 ✓.png", base)
    put("photo [final].png", base)
    put("broken [copy].jpg", data=b"\xff\xd8\xff\xe0 not really")
    files["corrupt-exif.jpg"] = write_corrupt_exif(d / "corrupt-exif.jpg")
    return files


UNREADABLE = {
    "empty.jpg": "empty file (0 bytes)",
    "truncated.jpg": re.compile(r"cannot decode image \(image file is truncated.*\)"),
    "truncated.png": re.compile(r"cannot decode image \(image file is truncated.*\)"),
    "text.jpg": "not an image file PIL can decode",
    "too-large.png": f"image too large (more than {MAX_PIXELS // 1_000_000} MP)",
    "broken [copy].jpg": "cannot decode image (Truncated File Read)",  # a JPEG header, then nothing
}


@pytest.fixture(scope="module")
def predicted(corpus, tiny_ckpt):
    """Every corpus file in one `classify predict` process: (outcome, records by name)."""
    names = list(corpus)
    out = invoke("classify", "predict", tiny_ckpt, *[corpus[n] for n in names], "--topk", "3", subprocess=True)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(corpus[n]) for n in names]  # one record each, input order
    return out, dict(zip(names, records))


def probs(record: dict) -> dict[str, float]:
    return {t["label"]: t["prob"] for t in record["topk"]}


def test_run_goes_on_and_exits_1_naming_the_count(predicted):
    out, records = predicted
    assert_error(out, f"{len(UNREADABLE)} of {len(records)} images could not be read", code=1, alone=False)


@pytest.mark.parametrize("name", list(UNREADABLE))
def test_unreadable_file_is_an_error_record_and_a_warning(predicted, corpus, name):
    out, records = predicted
    expected = UNREADABLE[name]
    message = records[name]["error"]
    prefix = f"{corpus[name]}: "
    assert message.startswith(prefix)
    reason = message[len(prefix):]
    assert expected.fullmatch(reason) if isinstance(expected, re.Pattern) else reason == expected, reason
    assert set(records[name]) == {"path", "error"}
    assert message in warnings_of(out)  # the same one line, file name as is ('[copy]' included)


@pytest.mark.parametrize("name, same_as", [
    ("grey.png", "grey-as-rgb.png"),  # grey: the grey value in all three channels
    ("grey16.png", "grey.png"),  # 16-bit: v * 257 reads back as v, not clipped to white
    ("rgba.png", "base.png"),  # alpha dropped, colours as stored
    ("palette.png", "palette-as-rgb.png"),  # palette: the palette's colours
    ("exif-rotated.jpg", "exif-upright.png"),  # EXIF orientation applied
    ("one-pixel.png", "solid-32.png"),  # 1x1: scaled up to a solid image
    ("huge-12000.jpg", "grey128-32.png"),  # 12000 x 12000: decoded (draft) and predicted
    ("dir with spaces ünïcødé/ímage 1 ✓.png", "base.png"),
    ("photo [final].png", "base.png"),
])
def test_unusual_file_is_predicted_like_its_plain_equivalent(predicted, name, same_as):
    _, records = predicted
    assert "error" not in records[name]
    assert probs(records[name]) == probs(records[same_as])


def test_exif_orientation_matters_for_this_model(predicted):
    """The EXIF test above would pass with EXIF ignored only if the model could
    not tell the stored pixels from the upright ones; it can."""
    _, records = predicted
    assert probs(records["exif-stripped.png"]) != probs(records["exif-upright.png"])


def test_cmyk_jpeg_is_predicted_from_its_rgb_colours(predicted, corpus):
    _, records = predicted
    assert "error" not in records["cmyk.jpg"]
    diff = np.abs(load_image(corpus["cmyk.jpg"]).astype(int) - load_image(corpus["base.png"]).astype(int))
    assert diff.mean() < 6  # JPEG loss only; inverted or swapped channels are > 60


def test_corrupt_exif_is_ignored_with_a_warning(predicted, corpus):
    out, records = predicted
    assert "error" not in records["corrupt-exif.jpg"]
    mine = [w for w in warnings_of(out) if w.startswith(f"{corpus['corrupt-exif.jpg']}: ")]
    assert len(mine) == 1 and "EXIF" in mine[0], warnings_of(out)


def test_only_one_line_per_problem_on_stderr(predicted):
    out, _ = predicted
    assert "Traceback" not in out.stderr and "UserWarning" not in out.stderr
    problems = [line for line in out.lines if not line.startswith(("warning: ", "error: ", "predict"))]
    assert problems == [], problems


# ------------------------------------------------------------- library level

def test_huge_jpeg_is_decoded_at_one_eighth_scale(corpus):
    image, full = load_image_sized(corpus["huge-12000.jpg"], draft_size=(32, 32))
    assert image.shape == (1500, 1500, 3) and full == (12000, 12000)


def test_rotated_jpeg_draft_keeps_the_displayed_size_above_the_request(tmp_path):
    """The draft size is given upright (w, h); the decoder works on the stored,
    turned frame: asked for 100 x 200 of a stored 400 x 200 turned by EXIF, the
    image must come out 100 x 200 (scale 1/2), not 50 x 100 or unscaled."""
    path = write_exif_rotated(tmp_path / "r.jpg", pattern_image(400, 200))  # upright 200 wide, 400 high
    image, full = load_image_sized(path, draft_size=(100, 200))
    assert full == (400, 200) and image.shape == (200, 100, 3)


def test_exif_rotation_through_the_predictor_tensor(corpus, tiny_ckpt):
    from visiontk.engine.predictor import Predictor

    p = Predictor(tiny_ckpt, "classify", device="cpu")
    rotated, meta = p.load(corpus["exif-rotated.jpg"])
    upright, _ = p.load(corpus["exif-upright.png"])
    stripped, _ = p.load(corpus["exif-stripped.png"])
    assert meta["orig_size"] == (48, 40)  # (h, w) as displayed
    assert (rotated - upright).abs().max() == 0
    assert (rotated - stripped).abs().mean() > 0.1


# ------------------------------------------------------------- sources

def test_missing_file_in_a_stdin_list(corpus, tiny_ckpt, tmp_path):
    missing = tmp_path / "gone.png"
    stdin = f"{corpus['base.png']}\n{missing}\n\n{corpus['grey.png']}\n"
    out = invoke("classify", "predict", tiny_ckpt, "-", stdin=stdin)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(corpus["base.png"]), str(missing), str(corpus["grey.png"])]
    assert records[1] == {"path": str(missing), "error": f"{missing}: no such file"}
    assert "label" in records[0] and "label" in records[2]
    assert warnings_of(out) == [f"{missing}: no such file"]
    assert_error(out, "1 of 3 images could not be read", code=1, alone=False)


def test_directory_with_no_images(tiny_ckpt, tmp_path):
    empty = tmp_path / "no images here"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    out = invoke("classify", "predict", tiny_ckpt, empty)
    assert out.stdout == ""
    assert warnings_of(out) == [f"{empty}: folder holds no images"]
    assert_error(out, f"no images to predict in {empty}", alone=False)
    assert len(out.lines) == 2


def test_missing_source_path(tiny_ckpt, tmp_path):
    out = invoke("classify", "predict", tiny_ckpt, tmp_path / "nowhere")
    assert_error(out, f"{tmp_path / 'nowhere'}: no such file, folder or pattern")


def test_glob_matching_nothing(tiny_ckpt, tmp_path):
    pattern = str(tmp_path / "*.png")
    out = invoke("classify", "predict", tiny_ckpt, pattern)
    assert warnings_of(out) == [f"{pattern}: pattern matches no images"]
    assert_error(out, f"no images to predict in {pattern}", alone=False)
