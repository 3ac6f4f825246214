"""The one output rule: every output is checked against every input of the run before any work,
and an output is never an input, even with --overwrite. Special files are written into, never replaced.

The refusals come before the checkpoint is loaded, so the detect cases use the
tiny classifier: no detection model is needed to show that nothing was written.
"""
from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from .support import assert_error, invoke, pattern_image

NEVER = "an output folder is never an input, even with --overwrite (choose another directory)"


def _images(folder: Path, names=("x.png", "y.png")) -> dict[Path, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        pattern_image(seed=i).save(folder / name)
    return {p: p.read_bytes() for p in folder.iterdir()}


def _untouched(before: dict[Path, bytes]) -> None:
    folders = {p.parent for p in before}
    assert {p for f in folders for p in f.iterdir()} == set(before)
    assert all(p.read_bytes() == data for p, data in before.items())


def test_save_images_into_a_source_folder_is_refused_even_with_overwrite(tiny_ckpt, tmp_path):
    """The drawing of SRC_A/x.png would have replaced the input SRC_B/x.png."""
    src_a, src_b = tmp_path / "a", tmp_path / "b"
    before = {**_images(src_a), **_images(src_b)}
    out = invoke("detect", "predict", tiny_ckpt, src_a, src_b, "--save-images", src_b, "--overwrite")
    assert_error(out, f"{src_b}: --save-images is the source folder {src_b}; {NEVER}")
    _untouched(before)


def test_save_images_into_the_folder_of_a_source_file_is_refused(tiny_ckpt, tmp_path):
    before = {**_images(tmp_path / "a"), **_images(tmp_path / "b")}
    x_b = tmp_path / "b" / "x.png"
    out = invoke("detect", "predict", tiny_ckpt, tmp_path / "a" / "x.png", x_b, "--save-images", tmp_path / "b",
                 "--overwrite")
    assert_error(out, f"{x_b}: is both an input image and in the --save-images folder; {NEVER}")
    _untouched(before)


def test_yolo_label_folder_that_is_a_source_folder_is_refused(tiny_ckpt, tmp_path):
    before = _images(tmp_path / "a")
    (tmp_path / "a" / "x.txt").write_text("a note, not a label file\n")
    before[tmp_path / "a" / "x.txt"] = (tmp_path / "a" / "x.txt").read_bytes()
    out = invoke("detect", "predict", tiny_ckpt, tmp_path / "a", "--format", "yolo", "--out", tmp_path / "a",
                 "--overwrite")
    assert_error(out, f"{tmp_path / 'a'}: --out is the source folder {tmp_path / 'a'}; {NEVER}")
    _untouched(before)


@pytest.fixture(scope="module")
def detect_ckpt(tmp_path_factory) -> Path:
    from untrained import save_untrained_checkpoint

    return save_untrained_checkpoint(tmp_path_factory.mktemp("detect") / "best.pt", "detect/shapes",
                                     ["data.image_size=32", "model.head.S=2", "model.head.width=8",
                                      "model.backbone_options.width=4"], ["circle", "square", "triangle"])


def test_stdin_input_inside_the_save_images_folder_is_refused_as_it_comes(detect_ckpt, tmp_path):
    """Stdin paths are known only as they come: refused before the image is read or drawn."""
    before = _images(tmp_path / "b")
    x_b = tmp_path / "b" / "x.png"
    out = invoke("detect", "predict", detect_ckpt, "-", "--save-images", tmp_path / "b", "--overwrite",
                 stdin=f"{x_b}\n")
    assert_error(out, f"{x_b}: is both an input image and in the --save-images folder; {NEVER}", alone=False)
    _untouched(before)


def test_out_naming_the_checkpoint_is_refused_before_loading_it(tiny_ckpt, tmp_path):
    before = tiny_ckpt.read_bytes()
    image = tmp_path / "x.png"
    pattern_image().save(image)
    out = invoke("classify", "predict", tiny_ckpt, image, "--out", tiny_ckpt, "--overwrite")
    assert_error(out, f"{tiny_ckpt}: is both the checkpoint and the --out file; refusing to overwrite an input")
    assert tiny_ckpt.read_bytes() == before


def test_out_to_dev_null_writes_into_it_and_leaves_it_a_device(tiny_ckpt, tmp_path):
    image = tmp_path / "x.png"
    pattern_image().save(image)
    out = invoke("classify", "predict", tiny_ckpt, image, "--out", "/dev/null")
    assert out.returncode == 0, out.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_out_to_a_fifo_writes_into_it_and_leaves_it_a_fifo(tiny_ckpt, tmp_path):
    image = tmp_path / "x.png"
    pattern_image().save(image)
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    out = invoke("classify", "predict", tiny_ckpt, image, "--out", fifo)
    reader.join(timeout=60)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["path"] for line in received[0].splitlines()] == [str(image)]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.fifo", "x.png"]


def test_export_to_a_fifo_is_refused(tiny_ckpt, tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    out = invoke("export", tiny_ckpt, "--format", "torchscript", "--out", fifo)
    assert_error(out, f"{fifo}: --out is not a regular file; the export is read back to check it, so it needs one")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.parametrize("option", ["--out", "--save-images"])
def test_output_that_is_a_socket_or_other_special_file_is_refused(tiny_ckpt, tmp_path, option):
    import socket

    path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    try:
        image = tmp_path / "x.png"
        pattern_image().save(image)
        out = invoke("detect", "predict", tiny_ckpt, image, option, path)
        expected = (f"{path}: output path is a socket, not a file; refusing to write to it" if option == "--out"
                    else f"{path}: --save-images must be a directory, and this is a file")
        assert_error(out, expected)
    finally:
        sock.close()
