"""`visiontk <task> predict` loads only what prediction needs.

Training's augmentations (albumentations), evaluation's COCO scoring
(pycocotools), plotting (matplotlib) and rich's traceback handler cost start-up
time and memory and play no part in writing predictions; torchvision (about a
second: it loads torch._dynamo) is for torchvision backbones and detection's
NMS, and so is torch._dynamo. Each case runs the real command in a fresh interpreter on one image and
lists the modules it ended with.

Start-up (benchmarks/memory_bench.py's table): the command line builds only the
asked group (commands/lazy_groups.py), so no other group's command module is
imported; YAML is read for recipe files and --set values, never for a
checkpoint; recipe sections build their pydantic validators on first use, so
those of data formats and input kinds the checkpoint does not use stay unbuilt
(and the models of a signal's or text's stored preprocessing are not even
defined for an image checkpoint, engine/checkpoint_meta.py).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from untrained import save_untrained_checkpoint

NEVER = ("matplotlib", "pycocotools", "albumentations", "rich.traceback", "pandas")

PROBE = """
import json, runpy, sys
sys.argv = ["visiontk", *json.loads(sys.argv[1])]
try:
    runpy.run_module("visiontk", run_name="__main__")
except SystemExit as e:
    if e.code:
        raise
built = []
if "visiontk.recipe.fields" in sys.modules:
    from visiontk.recipe.fields import Section
    todo = [Section]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__pydantic_complete__:
            built.append(f"{cls.__module__}.{cls.__qualname__}")
print(json.dumps({"modules": sorted(sys.modules), "built": sorted(set(built))}), file=sys.stderr)
"""

# Modules of the command groups a `<task> predict` does not run (cli.py builds only the asked group).
OTHER_GROUPS = ("visiontk.commands.transfer", "visiontk.commands.misc", "visiontk.commands.data_check",
                "visiontk.commands.model", "visiontk.commands.summary_view", "visiontk.commands.weights",
                "visiontk.commands.export", "visiontk.commands.merge", "visiontk.commands.report")
# Stored preprocessing of the input kinds an image checkpoint is not (engine/checkpoint_meta.py).
OTHER_KINDS = ("visiontk.engine.checkpoint_meta.SignalPreprocessMetaHolder",
               "visiontk.engine.checkpoint_meta.TextPreprocessMetaHolder")


def predict_modules(args: list[str]) -> tuple[list[dict], set[str]]:
    """(records, modules imported) of a predict run in a fresh interpreter."""
    records, modules, _ = predict_probe(args)
    return records, modules


def predict_probe(args: list[str]) -> tuple[list[dict], set[str], set[str]]:
    """(records, modules imported, recipe sections whose pydantic validator was built)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    records = [json.loads(line) for line in out.stdout.splitlines()]
    probe = json.loads(out.stderr.strip().splitlines()[-1])
    return records, set(probe["modules"]), set(probe["built"])


@pytest.mark.parametrize("task, recipe, overrides", [
    ("classify", "classify/shapes", []),  # tinycnn: no torchvision either
    ("detect", "detect/shapes", []),      # albumentations augmentations in its recipe
])
def test_predict_imports_only_what_it_needs(tmp_path, task, recipe, overrides):
    ckpt = save_untrained_checkpoint(tmp_path / "model.pt", recipe, overrides, ["circle", "square", "triangle"])
    image = tmp_path / "shape.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(image)
    records, modules, built = predict_probe([task, "predict", str(ckpt), str(image), "--device", "cpu"])
    assert [r["path"] for r in records] == [str(image)]  # it did predict
    loaded = {m for m in modules for heavy in NEVER if m == heavy or m.startswith(heavy + ".")}
    assert not loaded, f"{task} predict imported {sorted(loaded)}"
    # Start-up: only this task's group was built. Nor was yaml imported, for classify (detect's
    # data formats import it, data/formats/files.py), nor the signal and text modules for detect
    # (classify's data formats are images, signals and text: it registers all three).
    unneeded = (["yaml"] if task == "classify" else ["visiontk.data.signals", "visiontk.data.text"])
    others = [m for m in (*OTHER_GROUPS, *(f"visiontk.tasks.options.{t}" for t in ("classify", "detect", "segment")
                                           if t != task), *unneeded) if m in modules]
    assert not others, f"{task} predict imported {others}"
    # The checkpoint's recipe was validated (its schema built), and nothing else's.
    assert any(name.startswith("visiontk.recipe.schema.Recipe[") for name in built), sorted(built)
    unused = [name for name in built if name in OTHER_KINDS
              or name in ("visiontk.data.signals.SignalOptions", "visiontk.data.text.TextOptions")]
    assert not unused, f"{task} predict built the validators of {unused}"
    if task == "classify":
        # Nor torchvision, nor torch._dynamo (sympy): the check of the weights against
        # the checkpoint's recipe builds the model on the CPU, not on the meta device.
        assert "torchvision" not in modules and "torch._dynamo" not in modules and "sympy" not in modules
    # The recipe stored in the checkpoint does list augmentations: they were not built.
    import torch

    assert torch.load(ckpt, weights_only=True)["recipe"]["data"]["augment"]


def test_predict_on_a_cached_export_does_not_build_the_torch_model(tmp_path, monkeypatch):
    """--backend onnxruntime exports the checkpoint once; the runs after it read the cached
    file and neither build the PyTorch model nor import its backbone's library
    (torchvision, which loads torch._dynamo: 2.5 s of start-up on a 2-core CPU)."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("VISIONTK_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = save_untrained_checkpoint(tmp_path / "model.pt", "classify/shapes",
                                     ["model.backbone=mobilenet_v3_small", "model.backbone_options={}",
                                      "data.image_size=[32,32]"], ["circle", "square", "triangle"])
    image = tmp_path / "shape.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(image)
    args = ["classify", "predict", str(ckpt), str(image), "--device", "cpu", "--precision", "fp32"]
    first, first_modules = predict_modules([*args, "--backend", "onnxruntime"])  # exports: builds the model
    assert "torchvision" in first_modules
    again, modules = predict_modules([*args, "--backend", "onnxruntime"])
    assert again == first
    assert "torchvision" not in modules and "torch._dynamo" not in modules and "torch.onnx" not in modules
    # The torch backend builds it, and agrees with the export.
    torch_records, torch_modules = predict_modules([*args, "--backend", "torch"])
    assert "torchvision" in torch_modules
    assert [[t["label"] for t in r["topk"]] for r in torch_records] == [[t["label"] for t in r["topk"]] for r in first]
    assert [t["prob"] for t in torch_records[0]["topk"]] == pytest.approx([t["prob"] for t in first[0]["topk"]],
                                                                          abs=1e-4)
