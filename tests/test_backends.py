"""Inference backends (engine/runtimes.py, engine/runtime_choice.py): onnxruntime and
OpenVINO run only the model's forward pass, so the records `predict` writes must be
torch's for every task, within rounding; `export --format openvino`; the measured
choice of --precision/--backend auto is the fastest measured, and cached.

The models are tiny and untrained (parity needs no training), exported once per
module: each ONNX export costs seconds.
"""
from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
import torch
from helpers import run_cli
from untrained import save_untrained_checkpoint

from visiontk.engine import runtime_choice
from visiontk.engine.build import model_from_checkpoint
from visiontk.engine.predictor import Predictor
from visiontk.errors import UserError
from visiontk.tasks.options.classify import ClassifyPredictOptions
from visiontk.tasks.options.detect import DetectPredictOptions
from visiontk.tasks.options.segment import SegmentPredictOptions

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

SHAPES = ["circle", "square", "triangle"]
MODELS = {
    "classify": ("classify/shapes", ["data.image_size=48", "model.backbone_options.width=4"], SHAPES),
    "detect": ("detect/shapes", ["data.image_size=64", "model.head.S=4", "model.head.width=16",
                                 "model.backbone_options.width=4"], SHAPES),
    "segment": ("segment/shapes-unet", ["data.image_size=48", "model.backbone_options.width=4"], ["background", *SHAPES]),
}
# Images of another size than the models' inputs (resized by predict; tiled by segment --tile),
# 5 of them in batches of 2: the last batch is partial.
N_IMAGES, BATCH = 5, 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory, visiontk_cache):
    root = tmp_path_factory.mktemp("backends")
    rng = np.random.default_rng(0)
    images = []
    for i in range(N_IMAGES):
        img = np.full((80, 96, 3), rng.integers(0, 255, 3), np.uint8)
        for _ in range(3):
            c = tuple(int(v) for v in rng.integers(0, 255, 3))
            x, y, r = (int(v) for v in rng.integers(10, 70, 3))
            cv2.circle(img, (x, y), r // 3 + 4, c, -1) if i % 2 else cv2.rectangle(img, (x, y), (x + r // 2, y + r // 3), c, -1)
        path = root / f"img{i}.png"
        cv2.imwrite(str(path), img)
        images.append(path)
    ckpts = {task: save_untrained_checkpoint(root / task / "best.pt", recipe, overrides, classes)
             for task, (recipe, overrides, classes) in MODELS.items()}
    # The untrained U-Net's logits vary ~100x less over the image than between classes (one
    # class everywhere): its class biases are set to cancel the mean logits on these images,
    # so its masks hold several classes, with many near-ties where backends could disagree.
    model, ckpt = model_from_checkpoint(ckpts["segment"])
    from visiontk.data.preprocess import Preprocess

    pre = Preprocess.from_checkpoint(ckpt)
    with torch.no_grad():
        mean = model(torch.stack([pre(p) for p in images])).mean((0, 2, 3))
    saved = torch.load(ckpts["segment"], weights_only=True)
    saved["model"]["decoder.head.bias"] -= mean
    torch.save(saved, ckpts["segment"])
    return {"images": images, "ckpts": ckpts, "root": root}


def _options(task: str, **kw):
    if task == "detect":
        # An untrained model scores every cell low (~0.03): a low threshold keeps them all for NMS.
        return DetectPredictOptions(conf=0.01, **kw)
    if task == "segment":
        return SegmentPredictOptions(**kw)
    return None


def _records(ckpt, task, images, backend, options=None, precision="fp32"):
    predictor = Predictor(ckpt, task, device="cpu", batch_size=BATCH, workers=0, options=options,
                          precision=precision, backend=backend)
    records: list[dict] = []
    predictor.run(iter(images), records.append, progress=False)
    assert len(records) == len(images)
    return records, predictor


def _assert_same(task, ref, got, backend):
    for a, b in zip(ref, got):
        assert a["path"] == b["path"]
        if task == "classify":
            assert [t["label"] for t in a["topk"]] == [t["label"] for t in b["topk"]]
            np.testing.assert_allclose([t["prob"] for t in a["topk"]], [t["prob"] for t in b["topk"]], atol=1e-4)
        elif task == "detect":
            assert a["labels"] == b["labels"], backend
            np.testing.assert_allclose(a["boxes"], b["boxes"], atol=0.05)  # pixels, rounded to 0.01
            np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)
        else:
            assert a["mask"].shape == b["mask"].shape
            # Ties of two classes' logits may fall either way: a tiny share of the pixels.
            assert (a["mask"] != b["mask"]).mean() <= 1e-3, backend


@pytest.mark.parametrize("task", list(MODELS))
def test_onnxruntime_and_openvino_write_torchs_records(setup, task):
    ckpt, images = setup["ckpts"][task], setup["images"]
    ref, _ = _records(ckpt, task, images, "torch", _options(task))
    if task == "detect":
        assert sum(len(r["boxes"]) for r in ref) >= 10  # NMS had work to do
    if task == "segment":
        assert len({int(v) for r in ref for v in np.unique(r["mask"])}) >= 2
    for backend in ("onnxruntime", "openvino"):
        got, predictor = _records(ckpt, task, images, backend, _options(task))
        assert predictor.runtime.backend == backend and backend in predictor.describe()
        _assert_same(task, ref, got, backend)
    if task == "segment":
        # Tiled at full resolution (80x96 in 48x48 tiles, the model's input shape): visiontk's
        # stitching around the backend's forward pass.
        tiled = _options(task, tile=48, tile_overlap=8)
        ref_tiles, _ = _records(ckpt, task, images, "torch", tiled)
        assert ref_tiles[0]["mask"].shape == (80, 96)
        _assert_same(task, ref_tiles, _records(ckpt, task, images, "onnxruntime", tiled)[0], "onnxruntime tiles")


def test_export_openvino_is_checked_and_predicts_as_torch(setup, tmp_path):
    import openvino as ov

    from visiontk.engine.export import export_checkpoint

    ckpt = setup["ckpts"]["classify"]
    out = tmp_path / "model.xml"
    result = export_checkpoint(ckpt, "openvino", out, dynamic_batch=True)
    assert result["max_abs_diff"] <= 1e-4 and result["batch_sizes"] == [1, 3]
    meta = json.loads((tmp_path / "model.xml.json").read_text())
    assert meta["format"] == "openvino" and meta["weights"] == "model.bin" and (tmp_path / "model.bin").is_file()
    # Independently of visiontk's runtime wrapper: OpenVINO's own API on the file, against PyTorch.
    model, _ = model_from_checkpoint(ckpt)
    x = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    compiled = ov.Core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(x.numpy())[compiled.outputs[0]]
    with torch.no_grad():
        np.testing.assert_allclose(got, model.eval()(x).numpy(), atol=1e-4)
    # The file (with its sidecar) as predict's model: openvino by default, torch's records.
    ref, _ = _records(ckpt, "classify", setup["images"], "torch")
    got, predictor = _records(out, "classify", setup["images"], None)
    assert predictor.runtime.backend == "openvino"
    _assert_same("classify", ref, got, "openvino file")


def test_cli_backend_flag_and_refusals(setup):
    ckpt, images = setup["ckpts"]["classify"], setup["images"]
    base = ["classify", "predict", str(ckpt), *map(str, images), "--batch-size", str(BATCH), "--precision", "fp32"]
    ort_run = run_cli(*base, "--backend", "onnxruntime")  # the export is in the session's cache already
    assert ort_run.returncode == 0, ort_run.stderr
    assert "onnxruntime fp32" in ort_run.stderr
    ref, _ = _records(ckpt, "classify", images, "torch")
    _assert_same("classify", [{**r, "path": r["path"]} for r in ref], [json.loads(x) for x in ort_run.stdout.splitlines()],
                 "cli")
    r = run_cli(*base, "--backend", "tensorrt")
    assert r.returncode == 2 and "--backend 'tensorrt'" in r.stderr and "Traceback" not in r.stderr, r.stderr
    for kw, message in [({"backend": "openvino", "options": ClassifyPredictOptions(cam=str(setup["root"] / "cams"))},
                         "--cam needs the torch backend"),
                        ({"backend": "onnxruntime", "compile": True}, "--compile needs the torch backend"),
                        ({"backend": "onnxruntime", "precision": "bf16"}, "onnxruntime runs fp32")]:
        with pytest.raises(UserError, match=re.escape(message)):
            Predictor(ckpt, "classify", device="cpu", **{"precision": "fp32", **kw})


class _FakeClock:
    """A clock for measure(): each call of a runner advances it by that runner's next scripted time."""

    def __init__(self, scripted: dict[str, list[float]]):
        self.scripted, self.now, self.calls = scripted, [0.0], []

    def reset(self) -> None:
        self.now[0], self.calls[:] = 0.0, []

    def clock(self) -> float:
        return self.now[0]

    def runner(self, name: str):
        def run():
            self.calls.append(name)
            self.now[0] += self.scripted[name][self.calls.count(name) - 1]
        return run


def test_measure_picks_the_smallest_median_after_a_warm_up():
    scripted = {"a": [9.0, 3.0, 3.1, 2.9, 9.0, 3.0], "b": [1.0, 2.5, 2.6, 2.7, 2.4, 2.5], "c": [0.5, 4.0, 1.0, 4.0, 4.0, 4.0]}
    fake = _FakeClock(scripted)
    now, calls, runner = fake.now, fake.calls, fake.runner

    pick, medians, _ = runtime_choice.measure({n: runner(n) for n in scripted}, clock=fake.clock, rounds=5,
                                              time_cap=1e9)
    # The warm-up (first call of each) is not counted: c's 0.5 would win, a's 9.0 would lose.
    assert medians == {"a": 3.0, "b": 2.5, "c": 4.0} and pick == "b"
    assert calls[:3] == ["a", "b", "c"] and calls[3:6] == ["a", "b", "c"]  # interleaved rounds
    # The time cap ends the rounds (at least one is always timed).
    fake.reset()
    pick, medians, _ = runtime_choice.measure({n: runner(n) for n in scripted}, clock=fake.clock, time_cap=1.0)
    assert len(calls) == 6 and medians == {"a": 3.0, "b": 2.5, "c": 4.0}
    # Probes on a small batch: a precision more than 1.5x slower than its backend's fastest is not timed
    # further; backends are compared on full batches only (their fixed costs differ on 2 images).
    fake.reset()
    scripted.update({"t fp32": scripted["a"], "t bf16": scripted["c"], "o fp32": scripted["b"]})
    probe_times = {"t fp32": 1.0, "t bf16": 2.5, "o fp32": 9.0}

    def probe(name):
        def run():
            calls.append(f"probe {name}")
            # The first call is slow (set-up), and not what is compared.
            now[0] += probe_times[name] if calls.count(f"probe {name}") > 1 else 100.0
        return run

    names = ["t fp32", "t bf16", "o fp32"]
    pick, medians, pruned = runtime_choice.measure({n: runner(n) for n in names}, clock=fake.clock,
                                                   time_cap=1e9, probes={n: probe(n) for n in names})
    assert pruned == {"t bf16": 2.5} and medians == {"t fp32": 3.0, "o fp32": 2.5} and pick == "o fp32"
    assert calls[:6] == [f"probe {n}" for n in names] * 2 and "t bf16" not in calls
    # fp32, the reference, is never left out on a probe.
    fake.reset()
    probe_times.update({"t fp32": 2.5, "t bf16": 1.0})
    _, medians, pruned = runtime_choice.measure({n: runner(n) for n in names}, clock=fake.clock,
                                                time_cap=1e9, probes={n: probe(n) for n in names})
    assert pruned == {} and set(medians) == set(names)


def _scripted_measure(scripted: dict[str, list[float]]):
    """measure() on a _FakeClock, 5 rounds: (pick, medians, the calls in order)."""
    fake = _FakeClock(scripted)
    pick, medians, _ = runtime_choice.measure({n: fake.runner(n) for n in scripted}, clock=fake.clock, rounds=5,
                                              time_cap=1e9)
    return pick, medians, fake.calls


def test_a_reduced_precision_must_win_clearly_and_in_every_round():
    # bf16's median is 1.25x faster, but one round of five was slower than fp32: fp32 runs.
    pick, medians, _ = _scripted_measure({"torch fp32": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                                          "torch bf16": [1.0, 0.8, 0.8, 1.3, 0.8, 0.8]})
    assert medians["torch bf16"] < medians["torch fp32"] and pick == "torch fp32"
    # Faster in every round and by its median by more than 1.1x: bf16 runs.
    pick, _, _ = _scripted_measure({"torch fp32": [1.0] * 6, "torch bf16": [1.0, 0.8, 0.85, 0.8, 0.9, 0.8]})
    assert pick == "torch bf16"
    # Faster in every round, by less than 1.1x: fp32.
    pick, _, _ = _scripted_measure({"torch fp32": [1.0] * 6, "torch bf16": [1.0, 0.95, 0.95, 0.95, 0.95, 0.95]})
    assert pick == "torch fp32"
    # The fastest reduced precision lost a round, the next one won them all: the next one runs,
    # not fp32 (which both beat by their medians).
    pick, _, _ = _scripted_measure({"onnxruntime fp32": [1.0] * 6, "torch bf16": [1.0, 0.7, 0.7, 0.7, 0.7, 0.7],
                                    "openvino bf16": [1.0, 0.3, 0.3, 1.1, 0.3, 0.3]})
    assert pick == "torch bf16"
    # Backends are not held to this (the same numbers within rounding): the smallest median wins.
    pick, _, _ = _scripted_measure({"torch fp32": [1.0] * 6, "onnxruntime fp32": [1.0, 0.95, 1.2, 0.95, 0.95, 0.95]})
    assert pick == "onnxruntime fp32"


def test_calls_of_a_millisecond_are_repeated_within_a_round():
    # A 1 ms call is timed 20 times per round (20 ms at least, MIN_CALL), a 50 ms call once.
    pick, medians, calls = _scripted_measure({"fast fp32": [0.001] * 200, "slow fp32": [0.05] * 200})
    assert calls.count("fast fp32") == 1 + 5 * 20 and calls.count("slow fp32") == 1 + 5
    assert medians == {"fast fp32": pytest.approx(0.001), "slow fp32": pytest.approx(0.05)} and pick == "fast fp32"


def test_auto_runs_the_fastest_it_measured_and_caches_the_choice(setup, monkeypatch, visiontk_cache):
    ckpt = setup["ckpts"]["classify"]
    images = setup["images"]
    _, predictor = _records(ckpt, "classify", images, "auto", precision="auto")
    entries = json.loads((visiontk_cache / runtime_choice.CHOICES_FILE).read_text())
    mine = [e for e in entries.values() if len(e["key"]["candidates"]) >= 4]
    assert len(mine) == 1
    ms, pruned = mine[0]["ms"], mine[0]["pruned_probe_ms"]
    assert {" ".join(c) for c in mine[0]["key"]["candidates"]} == set(ms) | set(pruned)
    # Never a setting that measured slower: the pick is the smallest median, and it is what runs.
    assert mine[0]["pick"] == min(ms, key=ms.get)
    assert f"{predictor.runtime.backend} {predictor.runtime.precision}" == mine[0]["pick"]
    # The second time nothing is timed: the cached choice runs.
    monkeypatch.setattr(runtime_choice, "measure", lambda *a, **k: pytest.fail("measured again"))
    _, again = _records(ckpt, "classify", images, "auto", precision="auto")
    assert f"{again.runtime.backend} {again.runtime.precision}" == mine[0]["pick"]
    # Explicit settings are not measured either.
    _, explicit = _records(ckpt, "classify", images, "torch", precision="bf16")
    assert explicit.runtime.dtype == torch.bfloat16


STOP_AFTER_OPENVINO = """
import gc, signal, sys
import numpy as np
import openvino as ov
import openvino.opset13 as ops
from visiontk.engine.runtimes import _OpenVino

x = ops.parameter([1, 3], np.float32, name="images")
ov.save_model(ov.Model([ops.relu(x)], [x]), sys.argv[1])
# What --backend auto does: an OpenVINO runtime per precision, timed, then released in the
# order they were made when another backend wins.
first, second = (_OpenVino(sys.argv[1], 1, precision) for precision in ("fp32", "bf16"))
first(np.ones((1, 3), np.float32))
second(np.ones((1, 3), np.float32))
del first
gc.collect()
del second
gc.collect()
signal.signal(signal.SIGTERM, lambda signum, frame: print("stopped", flush=True))
signal.raise_signal(signal.SIGTERM)
"""


def test_a_stop_signal_after_openvino_ran_is_handled_not_a_crash(tmp_path):
    """On a CPU with AMX, each OpenVINO Core swapped the alternate signal stack and put the
    old one back when released; two released in the order they were made left an unmapped
    stack in place, and the next Ctrl-C or SIGTERM crashed the process (exit 139) instead of
    stopping it (seen as a crash of the test run: this module, then test_stop_signals.py).
    One Core per process (runtimes.openvino_core) keeps the stack valid. (Without AMX the
    plugin leaves the signal stack alone, and this passes either way.)"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", STOP_AFTER_OPENVINO, str(tmp_path / "relu.xml")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout == "stopped\n", (done.returncode, done.stderr[-2000:])


def test_pipeline_and_auto_loaders_leave_other_backends_their_threads(setup):
    """onnxruntime's session keeps the threads it was built with: `--loader pipeline` takes none
    from torch for it (and says so), and auto does not put it on trial."""
    from helpers import torch_threads

    with torch_threads(2):
        for loader in ("pipeline", "auto"):
            predictor = Predictor(setup["ckpts"]["classify"], "classify", device="cpu", batch_size=BATCH, workers=2,
                                  precision="fp32", backend="onnxruntime", loader=loader)
            seen = []
            forward = predictor._forward
            predictor._forward = lambda pixels: (seen.append(torch.get_num_threads()), forward(pixels))[1]
            predictor.run(iter(setup["images"]), lambda record: None, progress=False)
            assert set(seen) == {2}, loader
            assert predictor.schedule.decided is not None, loader
            expected = ("2 decoding threads ahead of the model on 2 threads" if loader == "pipeline"
                        else "2 decoding threads taking turns with the model")
            assert predictor.describe().endswith(expected), predictor.describe()
