"""Bad and hostile checkpoints: refused with one line naming the file; never a line of their code run."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .support import TINY, assert_error, invoke, pattern_image

REFUSED = "it holds Python objects that could run code; refused (only tensors and plain data are loaded)"
TRUNCATED = "file is truncated or not a PyTorch checkpoint"


class RunsCode:
    """Unpickling this calls open(marker, 'w'): if the file appears, code from the checkpoint ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def hostile(tiny_ckpt, tmp_path) -> tuple[Path, Path]:
    """A checkpoint that looks like a real one but carries a code-running object: (path, marker)."""
    marker = tmp_path / "code-ran.txt"
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    ckpt["payload"] = RunsCode(marker)
    path = tmp_path / "hostile.pt"
    torch.save(ckpt, path)
    return path, marker


def test_the_hostile_checkpoint_really_runs_code_when_unpickled(hostile, tmp_path):
    """Control: without weights_only the payload runs (so the refusals below mean something)."""
    path, marker = hostile
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("command", ["predict", "eval", "resume"])
def test_hostile_checkpoint_is_refused(hostile, tiny_data, tmp_path, command):
    path, marker = hostile
    if command == "predict":
        image = tmp_path / "x.png"
        pattern_image().save(image)
        out = invoke("classify", "predict", path, image)
    elif command == "eval":
        out = invoke("classify", "eval", path, tiny_data)
    else:
        out = invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}", "--resume", path)
    assert_error(out, f"{path}: cannot load checkpoint: {REFUSED}")
    assert not marker.exists()


def test_hostile_pretrained_weights_are_refused(hostile, tiny_data, tmp_path):
    path, marker = hostile
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}",
                 "--set", f"model.pretrained={path}", "--project", tmp_path / "runs")
    assert "Traceback" not in out.stderr and out.returncode == 2
    assert out.lines[-1].startswith(f"error: {path}: not a loadable weights file (Weights only load failed")
    assert not marker.exists()


def _predict(ckpt: Path, tmp_path: Path):
    image = tmp_path / "x.png"
    pattern_image().save(image)
    return invoke("classify", "predict", ckpt, image)


def test_checkpoint_of_another_task(tiny_ckpt, tmp_path):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    ckpt["task"] = "segment"
    path = tmp_path / "segment.pt"
    torch.save(ckpt, path)
    assert_error(_predict(path, tmp_path), f"{path}: checkpoint is for task 'segment', not 'classify'")


def test_truncated_checkpoint(tiny_ckpt, tmp_path):
    data = tiny_ckpt.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    assert_error(_predict(path, tmp_path), f"{path}: cannot load checkpoint: {TRUNCATED}")


@pytest.mark.parametrize("content", [b"", b"just some text\n", b"PK\x03\x04" + b"\x00" * 40],
                         ids=["empty", "text", "zip header then zeros"])
def test_file_that_is_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "not.pt"
    path.write_bytes(content)
    assert_error(_predict(path, tmp_path), f"{path}: cannot load checkpoint: {TRUNCATED}")


def test_torch_file_that_is_not_a_visiontk_checkpoint(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    assert_error(_predict(path, tmp_path), f"{path}: not a visiontk checkpoint")


def test_checkpoint_whose_weights_do_not_fit_its_model(tiny_ckpt, tmp_path):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    ckpt["classes"] = ["a", "b", "c", "d"]  # the head has 3 outputs
    path = tmp_path / "mismatch.pt"
    torch.save(ckpt, path)
    out = _predict(path, tmp_path)
    assert "Traceback" not in out.stderr and out.returncode == 2 and len(out.lines) == 1
    # Found on a meta-device model, before a real one is allocated, naming the key.
    assert out.lines[0] == (f"error: {path}: weights 'model.head.fc.2.weight' have shape [3, 32], but the model its "
                            f"metadata describes (4 classes, its recipe) needs [4, 32]")


def test_missing_checkpoint(tmp_path):
    assert_error(_predict(tmp_path / "gone.pt", tmp_path), f"{tmp_path / 'gone.pt'}: checkpoint does not exist")


def test_resume_from_a_checkpoint_without_optimizer_state(tiny_run, tiny_data):
    """best.pt holds weights only: resuming from it is refused, pointing at last.pt."""
    best = tiny_run / "best.pt"
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}", "--resume", best)
    assert_error(out, f"{best}: holds no optimizer state, so training cannot resume from it "
                      f"(resume from the run's last.pt)")


def test_resume_from_a_checkpoint_of_another_task(tiny_run, tiny_data, tmp_path):
    ckpt = torch.load(tiny_run / "last.pt", weights_only=True)
    ckpt["task"] = "detect"
    path = tmp_path / "last.pt"
    torch.save(ckpt, path)
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}", "--resume", path)
    assert_error(out, f"{path}: checkpoint is for task 'detect', not 'classify'")


def test_checkpoint_of_another_task_given_to_detect_and_segment(tiny_ckpt, tmp_path):
    import typer.main

    from visiontk.cli import app

    groups = set(typer.main.get_command(app).commands)  # the names, without building the groups
    for task in ("detect", "segment"):
        if task not in groups:
            continue  # that command is not in this build yet
        image = tmp_path / "x.png"
        pattern_image().save(image)
        out = invoke(task, "predict", tiny_ckpt, image)
        assert_error(out, f"{tiny_ckpt}: checkpoint is for task 'classify', not '{task}'")


# ------------------------------------------------------------------ tampered metadata

def _set(keys: str, value):
    def apply(ckpt: dict) -> None:
        *path, last = keys.split(".")
        d = ckpt
        for k in path:
            d = d[k]
        d[last] = value
    return apply


TAMPERED = {  # what is changed -> the error after "<file>: "
    "input size below the recipe's bound": (_set("preprocess.size", [4, 4]), "'preprocess.size' must be an integer from 8 to 8192 or a list [height, width] of them, got [4, 4]"),
    "zero std": (_set("preprocess.std", [0.2, 0.0, 0.2]), "'preprocess.std[1]' must be > 0, got 0.0"),
    "two mean values": (_set("preprocess.mean", [0.5, 0.5]), "'preprocess.mean' must have 1 or 3 values, got [0.5, 0.5]"),
    "seven channels": (_set("preprocess.channels", 7), "'preprocess.channels' must be 1 or 3, got 7"),
    "unknown resize rule": (_set("preprocess.resize", "magic"), "'preprocess.resize' must be one of 'bilinear' | 'area_from_2x', got 'magic'"),
    "no classes": (_set("classes", []), "'classes' must not be empty, got []"),
    "a class that is not a name": (_set("classes", ["circle", 3, "triangle"]), "'classes[1]' must be a string, got 3"),
    # Refused before a head of a million outputs is allocated; the value is cut in the message.
    "a million classes": (_set("classes", [f"c{i}" for i in range(1_000_000)]),
                          "'classes' must have at most 100000 values, got ['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', "
                          "'c7', 'c8', 'c9', 'c10', 'c11', 'c12', 'c13', 'c14', 'c15', 'c16', 'c17', 'c1... "
                          "(10888890 characters)"),
    "recipe out of bounds": (_set("recipe.data.image_size", 2),
                             "'data.image_size' must be an integer from 8 to 8192 or a list [height, width] of them, got 2"),
    "recipe with an unknown key": (_set("recipe.train.lrr", 0.1), "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
    "topk of the wrong type": (_set("predict.topk", "all"), "'predict.topk' must be an integer, got 'all'"),
    "unknown predict setting": (_set("predict.rm_rf", 1), "unknown key 'predict.rm_rf'"),
}


@pytest.mark.parametrize("case", TAMPERED, ids=list(TAMPERED))
def test_tampered_checkpoint_metadata_is_one_line_naming_file_and_key(tiny_ckpt, tmp_path, case):
    tamper, message = TAMPERED[case]
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    tamper(ckpt)
    path = tmp_path / "tampered.pt"
    torch.save(ckpt, path)
    source = f"{path} (recipe)" if case.startswith("recipe") else str(path)
    assert_error(_predict(path, tmp_path), f"{source}: {message}")


# ------------------------------------------------------------------ --resume: the command line wins, stored roots are read only

def _synthetic_run(tmp_path: Path, root: Path) -> Path:
    """A 1-epoch run on synthetic data generated into `root`: its last.pt."""
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={root}",
                 "--set", "data.synthetic={n: 12, size: 32}", "--project", tmp_path / "runs", "--name", "run")
    assert out.returncode == 0, out.stderr
    return tmp_path / "runs" / "classify" / "run" / "last.pt"


def _storing_root(last: Path, root: Path, path: Path) -> Path:
    ckpt = torch.load(last, weights_only=True)
    ckpt["recipe"]["data"]["root"] = str(root)
    torch.save(ckpt, path)
    return path


def test_resume_never_generates_data_into_a_stored_root_the_command_line_does_not_name(tmp_path):
    last = _synthetic_run(tmp_path, tmp_path / "data")
    elsewhere = tmp_path / "home" / "someone"  # named only by the (edited) checkpoint
    hostile = _storing_root(last, elsewhere, tmp_path / "runs" / "classify" / "run" / "hostile.pt")
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", "train.epochs=2",
                 "--set", f"data.root={tmp_path / 'new'}", "--set", "data.synthetic={n: 12, size: 32}", "--resume", hostile)
    # --set data.root wins: the set is generated there, and nothing is written to the stored root.
    assert out.returncode == 0, out.stderr
    assert not elsewhere.exists() and (tmp_path / "new" / "synth.json").is_file()
    assert (f"{hostile}: resuming with the stored recipe; changed by this command line: "
            f"data.root '{elsewhere}' -> '{tmp_path / 'new'}', train.epochs 1 -> 2") in out.lines


def test_resume_set_data_root_wins_for_reading_too(tmp_path):
    last = _synthetic_run(tmp_path, tmp_path / "data")
    elsewhere = tmp_path / "home" / "someone"
    hostile = _storing_root(last, elsewhere, tmp_path / "runs" / "classify" / "run" / "hostile.pt")
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", "train.epochs=2",
                 "--set", f"data.root={tmp_path / 'data'}", "--resume", hostile)
    # Before, the stored root was used and the --set ignored: now the run trains on tmp_path/data.
    assert out.returncode == 0, out.stderr
    assert (f"{hostile}: resuming with the stored recipe; changed by this command line: "
            f"data.root '{elsewhere}' -> '{tmp_path / 'data'}', data.synthetic {{'n': 12, 'size': 32, 'seed': 0}} -> None, "
            f"train.epochs 1 -> 2") in out.lines
    assert not elsewhere.exists()


def test_resume_reads_but_never_writes_a_stored_root_the_command_line_does_not_name(tmp_path):
    last = _synthetic_run(tmp_path, tmp_path / "data")
    elsewhere = tmp_path / "home" / "someone"
    hostile = _storing_root(last, elsewhere, tmp_path / "runs" / "classify" / "run" / "hostile.pt")
    # No --set data.root: the stored root is the run's, the recipe file's root is another: read only.
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", "train.epochs=2",
                 "--set", "data.synthetic={n: 12, size: 32}", "--resume", hostile)
    assert_error(out, f"{hostile}: the stored data.root {elsewhere} is not this command line's; resume never writes "
                      f"data there (give --set data.root=DIR to choose where)", alone=False)
    assert not elsewhere.exists()


def test_resume_with_the_same_command_line_says_nothing_changed(tmp_path):
    last = _synthetic_run(tmp_path, tmp_path / "data")
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tmp_path / 'data'}",
                 "--set", "data.synthetic={n: 12, size: 32}", "--set", "train.epochs=2", "--resume", last)
    assert out.returncode == 0, out.stderr
    assert [line for line in out.lines if "resuming with" in line] == [
        f"{last}: resuming with the stored recipe; changed by this command line: train.epochs 1 -> 2"]


def test_resume_from_a_last_pt_whose_weights_do_not_fit_the_model(tiny_run, tiny_data, tmp_path):
    """Checked on a meta-device model before the real one is built: the file and the first key that differs."""
    ckpt = torch.load(tiny_run / "last.pt", weights_only=True)
    keys = list(ckpt["model"])
    second = keys[1]
    needed = list(ckpt["model"][second].shape)
    ckpt["model"][second] = torch.zeros(5, 7)
    path = tmp_path / "run" / "last.pt"
    path.parent.mkdir()
    torch.save(ckpt, path)
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}", "--resume", path)
    assert_error(out, f"{path}: weights 'model.{second}' have shape [5, 7], but the model its metadata describes "
                      f"(3 classes, its recipe) needs {needed}", alone=False)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]
