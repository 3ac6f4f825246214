"""The output rules every command shares (visiontk/outputs/): files replaced only at
the end and only with --overwrite, folders that refuse or renumber, never an input."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from visiontk.errors import UserError
from visiontk.outputs.output_file import OutputFile
from visiontk.outputs.output_folder import OutputFolder
from visiontk.outputs.plan import PredictionOutputs
from visiontk.outputs.records import JsonlWriter, RecordWriter


def test_output_file_is_stdout_or_a_file_replaced_only_at_the_end(tmp_path):
    for stdout in (None, "-"):
        with OutputFile(stdout).open_text() as stream:
            assert stream is sys.stdout
    target = tmp_path / "sub" / "results.jsonl"
    with OutputFile(target).open_text() as stream:  # new: written in place, folder made
        stream.write("first\n")
    with pytest.raises(UserError, match="output file exists \\(use --overwrite to replace it\\)"):
        OutputFile(target).check()
    with pytest.raises(RuntimeError), OutputFile(target, overwrite=True).open_text() as stream:
        stream.write("half")
        assert target.read_text() == "first\n"  # the old file stays until the end
        raise RuntimeError("the run failed")
    assert target.read_text() == "first\n" and [p.name for p in target.parent.iterdir()] == ["results.jsonl"]
    with OutputFile(target, overwrite=True).open_text() as stream:
        stream.write("second\n")
    assert target.read_text() == "second\n" and len(list(target.parent.iterdir())) == 1
    with pytest.raises(UserError, match="output path is a directory"):
        OutputFile(tmp_path, overwrite=True).check()


def test_output_file_is_never_an_input(tmp_path):
    image = tmp_path / "a" / "x.png"
    image.parent.mkdir()
    image.write_bytes(b"png")
    out = OutputFile(tmp_path / "a" / ".." / "a" / "x.png", overwrite=True)
    with pytest.raises(UserError, match="is both an input image and the --out file"):
        out.refuse_input(image)
    OutputFile(tmp_path / "other.png", overwrite=True).refuse_input(image)


def test_folder_that_refuses_existing_files_without_overwrite(tmp_path):
    folder = tmp_path / "labels"
    made = OutputFolder(folder, "--out")
    assert not folder.exists()  # created at the first file
    assert made.path_for("a/x.jpg", ".txt") == folder / "x.txt"
    assert made.path_for("b/x.jpg", ".txt") == folder / "x_2.txt"  # same name twice in one run
    (folder / "x.txt").write_text("")
    with pytest.raises(UserError, match="--out directory is not empty \\(use --overwrite to write into it\\)"):
        OutputFolder(folder, "--out")
    assert OutputFolder(folder, "--out", overwrite=True).path_for("x.jpg", ".txt") == folder / "x.txt"
    with pytest.raises(UserError, match="--out must be a directory, and this is a file"):
        OutputFolder(folder / "x.txt", "--out")


def test_folder_never_writes_over_the_image_it_comes_from(tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"png")
    with pytest.raises(UserError, match="--save-images would overwrite the input image"):
        OutputFolder(tmp_path, "--save-images", overwrite=True).path_for(image, ".png")


def test_folder_that_keeps_existing_files_gives_new_names(tmp_path):
    (tmp_path / "x.png").write_bytes(b"an input image")
    masks = OutputFolder(tmp_path, "--out-dir", keep_existing=True)  # not empty: fine
    first = masks.paths_for("a/x.jpg", [".png", "_overlay.jpg"])
    second = masks.paths_for("b/x.jpg", [".png", "_overlay.jpg"])
    assert first == [tmp_path / "x-2.png", tmp_path / "x-2_overlay.jpg"]
    assert second == [tmp_path / "x-3.png", tmp_path / "x-3_overlay.jpg"]
    assert (tmp_path / "x.png").read_bytes() == b"an input image"


class _Failing(RecordWriter):
    aborted = False

    def __call__(self, record):
        raise RuntimeError("disk full")

    def abort(self):
        self.aborted = True


def test_inputs_are_screened_and_a_failed_run_aborts_its_writer(tmp_path):
    photos, masks = tmp_path / "photos", tmp_path / "photos" / "masks"
    masks.mkdir(parents=True)
    inputs = [photos / "a.png", masks / "a.png", photos / "b.png"]
    outputs = PredictionOutputs(JsonlWriter, stream=OutputFile(tmp_path / "out.jsonl"),
                                folders=[OutputFolder(masks, "--out-dir", keep_existing=True)])
    assert list(outputs.screen_inputs(inputs, [str(photos)])) == [photos / "a.png", photos / "b.png"]
    with pytest.raises(UserError, match="out.jsonl: is both an input image and the --out file"):
        list(outputs.screen_inputs([tmp_path / "out.jsonl"], []))

    def run(paths, write, flush):
        for p in paths:
            write({"path": str(p)})
        flush()
        return {"images": 1}

    assert outputs.write(run, [photos / "a.png"], [str(photos / "a.png")]) == {"images": 1}
    assert (tmp_path / "out.jsonl").read_text() == f'{{"path": "{photos / "a.png"}"}}\n'
    failing = _Failing()
    with pytest.raises(RuntimeError, match="disk full"):
        PredictionOutputs(lambda stream: failing).write(run, [Path("x.png")], [])
    assert failing.aborted


def test_jsonl_writer_keeps_non_ascii_names():
    stream = io.StringIO()
    JsonlWriter(stream)({"path": "été.jpg"})
    assert stream.getvalue() == '{"path": "été.jpg"}\n'
