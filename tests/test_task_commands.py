"""The generic train / eval / predict commands (commands/task_commands.py): every task
gets the shared parameters, and its option dataclasses become exactly its own options."""
from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Optional

import pytest
import typer
from helpers import run_cli
from typer.testing import CliRunner

from visiontk.cli import app
from visiontk.commands.signature import Param, build_command, option_params, take_options
from visiontk.errors import UserError
from visiontk.tasks.options.detect import DetectEvalOptions, DetectPredictOptions
from visiontk.tasks.options.fields import option, option_meta, with_checkpoint_defaults
from visiontk.tasks.options.segment import ScoredAt, SegmentEvalOptions
from visiontk.tasks.registry import command_spec, get_task, task_names

TRAIN = ["recipe", "set", "device", "precision", "compile", "project", "name", "resume"]
EVAL = ["checkpoint", "data", "split", "json_out", "device", "batch_size", "plots_dir"]
PREDICT = ["checkpoint", "sources", "batch_size", "device", "workers", "precision", "backend", "compile", "loader", "shard"]


def _params(task: str, command: str) -> dict:
    group = typer.main.get_command(app).commands[task]
    return {p.name: p for p in group.commands[command].params}


def _fields(options_type: type) -> list[str]:
    return [f.name for f in dataclasses.fields(options_type)]


@pytest.mark.parametrize("task", task_names())
def test_every_task_gets_the_shared_parameters_and_exactly_its_own_options(task):
    spec = command_spec(task)
    assert list(_params(task, "train")) == TRAIN
    eval_params = _params(task, "eval")
    assert set(eval_params) == {*EVAL, *_fields(spec.eval_options)}
    assert eval_params["batch_size"].default == spec.eval_batch_size
    predict = _params(task, "predict")
    outputs = [] if spec.out_help is None else ["out", "overwrite"]
    assert set(predict) == {*PREDICT, *outputs, *_fields(spec.predict_options)}
    assert predict["batch_size"].default == spec.predict_batch_size
    for f in dataclasses.fields(spec.predict_options):
        meta, param = option_meta(f), predict[f.name]
        assert param.default == f.default and param.help == meta.help
        assert (param.min, param.max) == (meta.min, meta.max)
        assert not meta.flags or param.opts == list(meta.flags)


@pytest.mark.parametrize("task", task_names())
def test_the_task_reads_the_option_types_its_commands_make(task):
    implementation, spec = get_task(task), command_spec(task)
    assert (implementation.predict_options, implementation.eval_options) == (spec.predict_options, spec.eval_options)


def test_batch_sizes_and_output_options_per_task():
    assert [(command_spec(t).eval_batch_size, command_spec(t).predict_batch_size) for t in task_names()] == \
        [(64, 32), (32, 32), (16, 8)]
    assert "out" not in _params("segment", "predict") and "out_dir" in _params("segment", "predict")
    assert _fields(DetectPredictOptions) == ["conf", "iou", "max_det", "format", "save_images", "coco_images_from"]
    assert _fields(DetectEvalOptions) == ["conf", "iou", "max_det"]
    assert _fields(SegmentEvalOptions) == ["at"] and _params("segment", "eval")["at"].opts == ["--at"]


def test_segment_eval_scores_at_the_image_size_unless_told():
    """--at image-size | input-size; the library takes the dataset's spelling as well."""
    assert SegmentEvalOptions().at is ScoredAt.image_size and SegmentEvalOptions().at.mask_at == "image_size"
    assert SegmentEvalOptions(at="input_size") == SegmentEvalOptions(at="input-size") == SegmentEvalOptions(
        ScoredAt.input_size)
    with pytest.raises(UserError, match=r"^--at: 'full' is not one of image-size, input-size$"):
        SegmentEvalOptions(at="full")


@pytest.mark.parametrize("args, message", [
    (["detect", "predict", "x.pt", "y.jpg", "--conf", "1.5"], "Invalid value for '--conf'"),
    (["detect", "eval", "x.pt", "--max-det", "0"], "Invalid value for '--max-det'"),
    (["segment", "eval", "x.pt", "--at", "full"], "Invalid value for '--at'"),
    (["classify", "predict", "x.pt", "y.jpg", "--format", "xml"], "Invalid value for '--format'"),
    (["segment", "predict", "x.pt", "y.jpg", "--tile", "4"], "Invalid value for '--tile'"),
    (["segment", "predict", "x.pt", "y.jpg", "--out", "o.jsonl"], "No such option: --out"),
])
def test_an_option_out_of_its_bounds_is_one_line_and_exit_2(args, message):
    """Refused while parsing, before the (missing) checkpoint is looked at."""
    res = run_cli(*args)
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), res.stderr
    assert lines[0].endswith(f"{args[0]} {args[1]} --help')")  # (see 'visiontk detect predict --help')


def test_a_group_without_a_command_still_shows_its_help():
    res = run_cli("detect")
    assert res.returncode == 2 and "predict" in res.stdout and "Usage" in res.stdout


def test_unset_thresholds_come_from_the_checkpoint():
    stored = {"conf": 0.3, "iou": 0.45, "max_det": 50, "eval_conf": 0.002}
    assert with_checkpoint_defaults(DetectPredictOptions(iou=0.6), stored) == DetectPredictOptions(0.3, 0.6, 50)
    assert with_checkpoint_defaults(DetectEvalOptions(), stored) == DetectEvalOptions(0.002, 0.45, 50)
    assert with_checkpoint_defaults(DetectEvalOptions(), {}) == DetectEvalOptions()


# ---------------------------------------------------------------- the builder itself

class Colour(str, Enum):
    red = "red"
    blue = "blue"


@dataclasses.dataclass(frozen=True)
class Made:
    count: int = option(3, "How many.", min=1, max=9)
    colour: Colour = option(Colour.red, "Which.", flags=("--colour", "-c"))
    loud: bool = option(False, "Shout.", flags=("--loud",))
    name: Optional[str] = option(None, "Who.")


def _made_app(received: list) -> typer.Typer:
    made = typer.Typer()

    def body(**values):
        received.append((take_options(Made, values), values))

    made.command("run")(build_command("Run.", [Param("what", str, typer.Argument(...)), *option_params(Made)], body))
    made.command("other")(build_command("Other.", [], lambda: None))  # a group, so `run` is a subcommand
    return made


def test_a_dataclass_becomes_typed_options():
    received: list = []
    made = _made_app(received)
    ok = CliRunner().invoke(made, ["run", "x", "--count", "9", "-c", "blue", "--loud", "--name", "ann"])
    assert ok.exit_code == 0, ok.output
    assert received == [(Made(9, Colour.blue, True, "ann"), {"what": "x"})]
    CliRunner().invoke(made, ["run", "y"])
    assert received[-1] == (Made(), {"what": "y"})
    for bad in (["--count", "10"], ["--count", "0"], ["--colour", "green"], ["--no-loud"]):
        assert CliRunner().invoke(made, ["run", "z", *bad]).exit_code == 2, bad
    assert len(received) == 2


def test_a_task_option_cannot_shadow_a_shared_one():
    with pytest.raises(ValueError, match="parameter defined twice: device"):
        build_command("X.", [Param("device", str, typer.Option("auto")), Param("device", str, typer.Option("cpu"))],
                      lambda **v: None)


def test_eval_names_a_missing_relative_data_root_and_how_to_give_one(tmp_path, monkeypatch):
    """Found with recipes/classify/hymenoptera-lenet (data.root ../shared/data/...): eval run
    from another folder than training said only '../shared/data/hymenoptera/val: data folder
    does not exist'. It now names the checkpoint's root, the folder it was read from, and
    the DATA argument; given, that root is used."""
    from untrained import save_untrained_checkpoint

    from visiontk.data.synth import synth_classify
    from visiontk.engine.evaluator import evaluate_checkpoint

    ckpt = save_untrained_checkpoint(tmp_path / "best.pt", "classify/shapes",
                                     ["data.root=../data/shapes", "data.image_size=16",
                                      "model.backbone_options.width=4"], ["circle", "square", "triangle"])
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(UserError) as info:
        evaluate_checkpoint(ckpt, "classify", device="cpu")
    message = str(info.value)
    assert message.startswith("../data/shapes: the data root of") and str(tmp_path / "elsewhere") in message
    assert f"visiontk classify eval {ckpt} PATH/TO/DATA" in message
    synth_classify(tmp_path / "shapes", n=12, size=16, seed=0)
    metrics, _ = evaluate_checkpoint(ckpt, "classify", data=str(tmp_path / "shapes"), device="cpu")
    assert metrics["count"] == len(list((tmp_path / "shapes" / "val").rglob("*.png")))


@pytest.mark.parametrize("task, recipe", [("classify", "classify/hymenoptera-lenet"), ("segment", "segment/membrane")])
def test_train_names_a_missing_data_root_by_its_key(tmp_path, task, recipe):
    """Found with the shipped real-data recipes (data.root ../shared/data/...) run from another
    folder: classify said '.../train: data folder does not exist', segment '.../train/image: not
    a directory', neither naming data.root. One line for every task, nothing left behind."""
    res = run_cli(task, "train", recipe, "--set", "data.root=../no-such-set", "--project", str(tmp_path / "runs"),
                  cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip() == (f"error: ../no-such-set: data root does not exist (data.root, read from the current "
                                  f"folder {tmp_path}); give it: --set data.root=PATH")
    assert not (tmp_path / "runs").exists()
