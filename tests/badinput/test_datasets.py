"""Bad training data for `classify train`: empty sets and folders, unreadable images, odd batch sizes."""
from __future__ import annotations

import csv
import multiprocessing
import os
import shutil
import signal
from pathlib import Path

import pytest

from helpers import wait_until

from .support import TINY, assert_error, invoke, pattern_image, warnings_of, write_truncated


def train(root: Path, runs: Path, *extra: str, subprocess: bool = False):
    return invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={root}", *extra,
                  "--project", runs, "--name", "t", subprocess=subprocess)


def epochs_done(runs: Path) -> list[int]:
    with open(runs / "classify" / "t" / "results.csv") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


@pytest.fixture
def data(tiny_data, tmp_path) -> Path:
    """A private copy of the tiny data set, free to break."""
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    return root


def test_empty_data_set(tmp_path):
    for cls in ("circle", "square"):
        (tmp_path / "d" / "train" / cls).mkdir(parents=True)
    out = train(tmp_path / "d", tmp_path / "runs")
    split = tmp_path / "d" / "train"
    assert warnings_of(out) == [f"{split / c}: class '{c}' has no images" for c in ("circle", "square")]
    assert_error(out, f"{split}: data set is empty (no images in any class folder)", alone=False)


def test_split_with_no_class_folders(data, tmp_path):
    split = data / "train"
    for folder in list(split.iterdir()):
        for image in folder.iterdir():
            image.rename(split / f"{folder.name}-{image.name}")
        folder.rmdir()
    out = train(data, tmp_path / "runs")
    assert_error(out, f"{split}: no class folders (expected {split}/<class>/<image>)")


def test_missing_data_root(tmp_path):
    out = train(tmp_path / "nowhere", tmp_path / "runs")
    assert_error(out, f"{tmp_path / 'nowhere'}: data root does not exist (data.root); give it: --set data.root=PATH")


def test_class_folder_with_no_images_is_a_warning(data, tmp_path):
    shutil.rmtree(data / "train" / "square")
    (data / "train" / "square").mkdir()
    out = train(data, tmp_path / "runs")
    assert out.returncode == 0, out.stderr
    assert warnings_of(out) == [f"{data / 'train' / 'square'}: class 'square' has no images"]
    assert epochs_done(tmp_path / "runs") == [1]


def test_batch_size_larger_than_the_data_set(data, tmp_path):
    out = train(data, tmp_path / "runs", "--set", "train.batch_size=500")
    assert out.returncode == 0, out.stderr
    assert warnings_of(out) == ["train.batch_size 500 is larger than the training set (48 images); using batches of 48"]
    assert epochs_done(tmp_path / "runs") == [1]


def test_last_batch_of_one_image_is_dropped(data, tmp_path):
    """48 images in batches of 47 leave one image: BatchNorm cannot train on a
    batch of 1 once the features are 1x1 (at 32 px); that batch is dropped."""
    out = train(data, tmp_path / "runs", "--set", "train.batch_size=47")
    assert out.returncode == 0, out.stderr
    assert epochs_done(tmp_path / "runs") == [1]


def test_batch_size_1_with_batchnorm_is_a_clear_error(data, tmp_path):
    out = train(data, tmp_path / "runs", "--set", "train.batch_size=1")
    assert_error(out, "train.batch_size 1: a batch of 1 image is too small for the model's BatchNorm layers at this "
                      "image size; use train.batch_size >= 2 and at least 2 training images", alone=False)


def _break_images(folder: Path, n: int) -> list[Path]:
    """Replace the first `n` images of `folder` with broken files (same names)."""
    broken = []
    for image in sorted(folder.glob("*.png"))[:n]:
        write_truncated(image, "PNG")
        broken.append(image)
    return broken


def test_unreadable_training_images_are_skipped_in_worker_processes(data, tmp_path):
    bad = _break_images(data / "train" / "circle", 2) + _break_images(data / "val" / "square", 1)
    out = train(data, tmp_path / "runs", "--set", "train.workers=2", "--set", "train.epochs=2", subprocess=True)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    seen = warnings_of(out)
    for path in bad:
        assert f"{path}: cannot decode image (image file is truncated) (skipped)" in seen
    # Every warning is about one of these files (printed once per epoch that reads it).
    assert all(w.split(": ")[0] in {str(p) for p in bad} for w in seen), seen
    assert epochs_done(tmp_path / "runs") == [1, 2]


def test_unreadable_image_with_policy_error_is_one_line_from_a_worker(data, tmp_path):
    (bad,) = _break_images(data / "train" / "triangle", 1)
    out = train(data, tmp_path / "runs", "--set", "train.workers=2", "--set", "data.bad_annotations=error",
                subprocess=True)
    assert_error(out, f"{bad}: cannot decode image (image file is truncated)", alone=False)
    assert not any(line.startswith(("  ", "Original", "Caught")) for line in out.lines), out.stderr


def _two_class_set(root: Path, train: dict[str, tuple[int, int]]) -> None:
    """root/{train,val}/{a,b}: `train[cls]` = (readable, empty files); val: one readable each."""
    for split in ("train", "val"):
        for k, cls in enumerate("ab"):
            (root / split / cls).mkdir(parents=True)
            good, bad = train[cls] if split == "train" else (1, 0)
            for i in range(good):
                pattern_image(32, 32, seed=10 * k + i).save(root / split / cls / f"good{i}.png")
            for i in range(bad):
                (root / split / cls / f"bad{i}.png").write_bytes(b"")


def test_batches_left_empty_by_unreadable_images_are_skipped(tmp_path):
    """2 readable and 6 empty files in batches of 2: at least two batches hold
    only unreadable files; the epochs go on without them (64 px: BatchNorm
    trains on a batch of one image at this size)."""
    root = tmp_path / "d"
    _two_class_set(root, {"a": (1, 3), "b": (1, 3)})
    out = train(root, tmp_path / "runs", "--set", "train.batch_size=2", "--set", "train.epochs=2",
                "--set", "data.image_size=64")
    assert out.returncode == 0, out.stderr
    assert sorted(set(warnings_of(out))) == sorted(
        f"{root / 'train' / c / f'bad{i}.png'}: empty file (0 bytes) (skipped)" for c in "ab" for i in range(3))
    assert epochs_done(tmp_path / "runs") == [1, 2]


def test_batch_left_with_one_image_is_skipped_at_32px(tmp_path):
    """3 readable and 1 empty file in batches of 2: one batch shrinks to a single
    image, which BatchNorm cannot use once the features are 1x1: it is skipped
    (it used to stop the run with 'Expected more than 1 value per channel')."""
    root = tmp_path / "d"
    _two_class_set(root, {"a": (2, 0), "b": (1, 1)})
    out = train(root, tmp_path / "runs", "--set", "train.batch_size=2", "--set", "train.epochs=2")
    assert out.returncode == 0, out.stderr
    assert set(warnings_of(out)) == {f"{root / 'train' / 'b' / 'bad0.png'}: empty file (0 bytes) (skipped)"}
    assert epochs_done(tmp_path / "runs") == [1, 2]


def test_no_readable_training_image(tmp_path):
    root = tmp_path / "d"
    for split in ("train", "val"):
        for cls in "ab":
            (root / split / cls).mkdir(parents=True)
            (root / split / cls / "x.png").write_bytes(b"")
    out = train(root, tmp_path / "runs", "--set", "train.batch_size=2")
    assert_error(out, f"{root}: no training image could be read in epoch 1 (see the warnings above)", alone=False)


def test_unknown_augmentation(data, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"task: classify\ndata:\n  root: {data}\n  augment:\n    - HorizontalFlip: {{p: 0.5}}\n"
                      f"    - Flipp: {{p: 0.5}}\n")
    out = invoke("classify", "train", recipe, *TINY, "--project", tmp_path / "runs")
    assert_error(out, f"{recipe}: 'data.augment[1]': 'Flipp' is not an albumentations transform")


# ------------------------------------------------------------------ synth never deletes what it did not write

def test_synth_into_an_earlier_synth_folder_keeps_files_the_user_added(tmp_path):
    out = tmp_path / "set"
    assert invoke("data", "synth", "--task", "detect", "--out", out, "--n", "12", "--size", "16").returncode == 0
    mine = [out / "notes.txt", out / "images" / "train" / "my-photo.png", out / "labels" / "mine" / "a.txt"]
    for p in mine:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("keep me")
    result = invoke("data", "synth", "--task", "segment", "--out", out, "--n", "4", "--size", "16")
    assert result.returncode == 0, result.stderr
    assert all(p.read_text() == "keep me" for p in mine)
    # The detect files are gone (images/train holds only the user's file), the segment set is there.
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["my-photo.png"]
    assert not (out / "data.yaml").exists() and not (out / "annotations").exists()
    assert len(list((out / "train" / "images").iterdir())) == 3


def test_synth_json_naming_files_outside_its_folder_deletes_nothing_there(tmp_path):
    import json

    out, victim = tmp_path / "set", tmp_path / "victim.txt"
    assert invoke("data", "synth", "--task", "classify", "--out", out, "--n", "4", "--size", "16").returncode == 0
    victim.write_text("keep me")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.txt").write_text("keep me")
    (out / "linked").symlink_to(tmp_path / "elsewhere")
    record = json.loads((out / "synth.json").read_text())
    record["files"] += ["../victim.txt", str(victim), "linked/x.txt"]
    (out / "synth.json").write_text(json.dumps(record))
    assert invoke("data", "synth", "--task", "classify", "--out", out, "--n", "4", "--size", "16").returncode == 0
    assert victim.read_text() == "keep me" and (tmp_path / "elsewhere" / "x.txt").read_text() == "keep me"


def test_synth_over_an_output_of_an_older_synth_is_refused(tmp_path):
    import json

    out = tmp_path / "set"
    (out / "train").mkdir(parents=True)
    (out / "train" / "mine.png").write_text("keep me")
    (out / "synth.json").write_text(json.dumps({"generator": "visiontk.data.synth", "format_version": 1}))
    assert_error(invoke("data", "synth", "--task", "classify", "--out", out, "--n", "4", "--size", "16"),
                 f"{out}: synth.json does not list the files it wrote (an older visiontk's); "
                 "choose a new or empty directory, or empty this one yourself")
    assert (out / "train" / "mine.png").read_text() == "keep me"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_synth_killed_part_way_into_an_earlier_synth_folder_says_its_set_is_incomplete(tmp_path):
    """SIGKILL (no handler runs) after the first images are written: synth.json must not go on
    claiming the earlier, complete set; the next synth and the next `train` see the set is
    incomplete, and the next synth removes every file of the killed run, and only those."""
    import json

    from visiontk.data.synth import incomplete_synth, synth_classify
    from visiontk.tasks.recipes import load_recipe
    from visiontk.tasks.registry import get_task

    out = tmp_path / "set"
    synth_classify(out, n=8, size=16, seed=0)  # the earlier, complete set
    (out / "train" / "circle" / "mine.png").write_bytes(b"the user's")
    # `data synth` is synth_classify with its arguments checked: forked from this process, it
    # starts in milliseconds (a fresh interpreter took seconds on a busy machine).
    process = multiprocessing.get_context("fork").Process(target=synth_classify, args=(out, 20000, 16, 1))
    process.start()
    journal = out / "synth.incomplete"
    wait_until(lambda: journal.is_file() and journal.read_text().count("\n") >= 10, what="ten images written")
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert process.exitcode == -signal.SIGKILL
    assert json.loads((out / "synth.json").read_text())["complete"] is False
    assert incomplete_synth(out)
    recipe = load_recipe("classify/shapes", [f"data.root={out}"])
    assert get_task("classify").needs_synthesis(recipe)  # `train` would write the set again, not train on a part
    written = journal.read_text().splitlines()
    # The journal names each file before it is written: the last one named may not be on
    # disk when the kill came; every one before it is.
    assert len(written) >= 10 and all((out / name).is_file() for name in written[:-1])

    synth_classify(out, n=8, size=16, seed=1)
    fresh = tmp_path / "fresh"
    synth_classify(fresh, n=8, size=16, seed=1)
    assert _files(out) == sorted([*_files(fresh), "train/circle/mine.png"])
    assert (out / "synth.json").read_bytes() == (fresh / "synth.json").read_bytes()
    assert not incomplete_synth(out) and (out / "train" / "circle" / "mine.png").read_bytes() == b"the user's"
