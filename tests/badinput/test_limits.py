"""Limits with clear errors: what would hang, exhaust memory or oversubscribe the
machine is refused (exit 2, one line) or capped (a note) before any work."""
from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from .support import TINY, assert_error, encoded, invoke, pattern_image

# 390 bytes naming 9^9 = 387 million strings: everything that walks it would take hours.
ALIAS_BOMB = "".join([
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
    *(f"{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, n in zip("abcdefgh", "bcdefghi")),
])
EXPANDS = "expands to more than 100000 values (YAML aliases repeating aliases?); refused"


@pytest.fixture
def bomb(tmp_path) -> Path:
    path = tmp_path / "bomb.yaml"
    path.write_text(f"task: classify\n{ALIAS_BOMB}data: {{root: x, augment: *i}}\n")
    return path


def test_alias_bomb_recipe_is_refused_by_recipes_show_and_train(bomb, tiny_data):
    assert_error(invoke("recipes", "show", bomb), f"{bomb}: {EXPANDS}")
    assert_error(invoke("classify", "train", bomb, "--set", f"data.root={tiny_data}"), f"{bomb}: {EXPANDS}")


def test_alias_bomb_in_a_set_value(tiny_data):
    bomb = "{" + ALIAS_BOMB.replace("\n", ", ").rstrip(", ") + "}"
    out = invoke("classify", "train", "classify/shapes", "--set", f"data.options={bomb}")
    assert_error(out, f"{Path('recipes/classify/shapes.yaml').resolve()}: {EXPANDS}")


def test_alias_bomb_in_a_checkpoint_recipe_is_refused_on_resume(tiny_run, tmp_path, tiny_data):
    """A pickle shares objects as YAML aliases do: the same bomb, stored in last.pt."""
    ckpt = torch.load(tiny_run / "last.pt", weights_only=True)
    level = ["lol"] * 9
    for _ in range(8):
        level = [level] * 9
    ckpt["recipe"]["data"]["augment"] = level
    path = tmp_path / "run" / "last.pt"
    path.parent.mkdir()
    torch.save(ckpt, path)
    assert path.stat().st_size < (tiny_run / "last.pt").stat().st_size + 10_000  # a few bytes of pickle
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}", "--resume", path)
    assert_error(out, f"{path} (recipe): {EXPANDS}")


def test_recursive_alias(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("task: classify\ndata: &d {root: x, augment: [*d]}\n")
    assert_error(invoke("recipes", "show", path), f"{path}: contains itself (a recursive YAML alias); refused")


@pytest.mark.parametrize("value", ["9000", "[64, 100000]"])
def test_image_size_is_bounded(value):
    out = invoke("recipes", "show", "classify/shapes", "--set", f"data.image_size={value}")
    assert_error(out, f"{Path('recipes/classify/shapes.yaml').resolve()}: 'data.image_size' must be an integer from 8 "
                      f"to 8192 or a list [height, width] of them, got {value.replace(' ', ' ')}")


def test_workers_above_the_cpu_count_are_capped_with_a_note(tiny_data, tmp_path):
    from visiontk.engine.resources import usable_cpus

    cpus = usable_cpus()
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}",
                 "--set", f"train.workers={cpus + 61}", "--project", tmp_path, subprocess=True)
    assert out.returncode == 0, out.stderr
    notes = [line for line in out.lines if line.startswith("note:")]
    assert notes == [f"note: train.workers {cpus + 61} is more than the {cpus} CPUs this process can use; using {cpus}"]


def test_first_batch_larger_than_memory_is_refused(tiny_data, tmp_path, monkeypatch):
    from visiontk.engine import resources

    monkeypatch.setattr(resources, "available_memory", lambda: 2_000_000_000)
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}",
                 "--set", "data.image_size=4096", "--set", "train.batch_size=16", "--project", tmp_path)
    assert_error(out, "train.batch_size 16: one batch of 16 x 3 x 4096 x 4096 float32 values needs 3.2 GB, more than "
                      "the 2.0 GB of memory available; lower the batch size or data.image_size", alone=False)
    assert "epoch 1" not in out.stderr


def write_grey16_png(path: Path, width: int, height: int) -> Path:
    """A black 16-bit grey PNG of any size, written without holding its pixels."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    row = b"\x00" * (1 + 2 * width)
    comp = zlib.compressobj(1)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_16bit_png_counts_its_bytes_not_its_pixels(tiny_ckpt, tmp_path):
    """196 MP passes the 200 MP rule, but 16-bit samples plus the RGB copy take 980 MB: refused before decoding."""
    big = write_grey16_png(tmp_path / "deep.png", 14000, 14000)
    ok = tmp_path / "ok.png"
    pattern_image().save(ok)
    out = invoke("classify", "predict", tiny_ckpt, ok, big)
    assert out.returncode == 1, out.stderr
    assert out.lines[0] == (f"warning: {big}: image too large: 14000 x 14000 pixels of mode I;16 take 980 MB "
                            f"to decode as RGB (limit 600 MB)")


def test_16bit_image_is_still_scaled_exactly(tmp_path):
    from visiontk.data.images import load_image

    values = (np.arange(1100 * 50, dtype=np.uint32) * 7 % 65536).astype(np.uint16).reshape(1100, 50)  # > one band
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    expected = np.clip(values.astype(np.float64) / 65535 * 255 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(load_image(path, "L")[..., 0], expected)


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_inference_batch_larger_than_memory_is_refused(tiny_ckpt, tiny_data, command):
    """tiny_ckpt's input is 32 x 32 RGB: 12 KB a float32 image."""
    args = [tiny_data / "val"] if command == "predict" else [tiny_data]
    out = invoke("classify", command, tiny_ckpt, *args, "--batch-size", "100000000000")
    assert_error(out, re.compile(r"error: --batch-size 100000000000: one batch of 100000000000 x 3 x 32 x 32 float32 "
                                 r"values needs [\d.]+ GB, more than the [\d.]+ GB of memory available; "
                                 r"lower the batch size or data.image_size"))


# The peak resident memory of this process alone: VmHWM starts afresh at exec, whereas
# getrusage's ru_maxrss keeps the peak of the process that forked it (pytest with torch).
_PEAK_MEMORY = """
import json, sys
from visiontk.data.formats.files import image_size
from visiontk.data.images import open_image
from visiontk.errors import DataError
def peak_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
before = peak_kb()
try:
    open_image(sys.argv[1])
    error = None
except DataError as e:
    error = str(e)
size = image_size(sys.argv[1])
grew = peak_kb() - before
print(json.dumps({"error": error, "size": size, "peak_grew_kb": grew}))
"""


def test_huge_16bit_png_is_refused_from_its_header_alone(tmp_path):
    """Nothing decoded before the limit: PIL's PNG getexif decoded all 392 MB of samples
    (the peak grew by 385 MB) to look for an EXIF chunk, before the limit refused the image."""
    import json
    import subprocess
    import sys

    big = write_grey16_png(tmp_path / "deep.png", 14000, 14000)  # 1.7 MB on disk
    run = subprocess.run([sys.executable, "-c", _PEAK_MEMORY, str(big)], capture_output=True, text=True, check=True)
    result = json.loads(run.stdout)
    assert result["error"] == (f"{big}: image too large: 14000 x 14000 pixels of mode I;16 take 980 MB to decode as "
                               f"RGB (limit 600 MB)")
    assert result["size"] == [14000, 14000]  # its size is still read, from the header
    assert result["peak_grew_kb"] < 30_000, result


def _chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def test_png_exif_after_the_pixels_still_turns_the_image(tmp_path):
    """The EXIF chunk is found from the chunk headers (not by decoding), also when it follows the pixel data."""
    from visiontk.data.formats.files import image_size
    from visiontk.data.images import load_image

    upright = pattern_image(40, 48)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    body = exif.tobytes()[len(b"Exif\x00\x00"):] if exif.tobytes().startswith(b"Exif") else exif.tobytes()
    stored = encoded(upright.transpose(Image.Transpose.ROTATE_90), "PNG")
    iend = stored.rindex(b"IEND") - 4
    path = tmp_path / "late-exif.png"
    path.write_bytes(stored[:iend] + _chunk(b"eXIf", body) + stored[iend:])
    assert b"eXIf" not in stored and path.read_bytes().index(b"eXIf") > path.read_bytes().index(b"IDAT")
    assert np.array_equal(load_image(path), np.asarray(upright))
    assert image_size(path) == (40, 48)


def test_export_batch_larger_than_memory_is_refused_before_allocating(tiny_ckpt, tmp_path):
    """tiny_ckpt's input is 32 x 32 RGB: a batch of 10^11 would be 1.2 PB of example images."""
    out = invoke("export", tiny_ckpt, "--format", "torchscript", "--out", tmp_path / "m.pt",
                 "--batch-size", "100000000000")
    assert_error(out, re.compile(r"error: --batch-size 100000000000: one batch of 100000000000 x 3 x 32 x 32 float32 "
                                 r"values needs [\d.]+ GB, more than the [\d.]+ GB of memory available; "
                                 r"lower the batch size or data.image_size"))
    assert list(tmp_path.iterdir()) == []


def test_validation_loader_workers_are_capped_too(tiny_data, tmp_path):
    """Both loaders of a training run get the capped count (the cap note is tested above)."""
    from visiontk.engine.resources import usable_cpus
    from visiontk.engine.trainer import Trainer
    from visiontk.tasks.recipes import load_recipe

    recipe = load_recipe("classify/shapes", [s for s in TINY if s != "--set"] +
                         [f"data.root={tiny_data}", f"train.workers={usable_cpus() + 61}"])
    train_loader, val_loader, _ = Trainer(recipe, device="cpu", project=str(tmp_path))._loaders()
    assert train_loader.num_workers == val_loader.num_workers == usable_cpus()


def test_embed_workers_above_the_cpu_count_are_capped_with_a_note(tiny_ckpt, tmp_path):
    from visiontk.engine.resources import usable_cpus

    image = tmp_path / "x.png"
    pattern_image().save(image)
    out = invoke("transfer", "embed", tiny_ckpt, image, "--workers", "100000")
    assert out.returncode == 0, out.stderr
    cpus = usable_cpus()
    assert [line for line in out.lines if line.startswith("note:")] == [
        f"note: --workers 100000 is more than the {cpus} CPUs this process can use; using {cpus}"]
    assert len(out.stdout.splitlines()) == 1  # the image's embedding
