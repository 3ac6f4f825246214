"""1-D signals in classify: file formats, MNIST-1D generation offline, the 1-D backbones and the CLI end to end."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
from helpers import run_cli

from visiontk.backbones.registry import create_backbone
from visiontk.data.signals import SignalOptions, SignalPreprocess, label_indices, read_signal_file
from visiontk.data.sources import StdinLine
from visiontk.engine.build import build_model, count_parameters
from visiontk.errors import DataError, UserError
from visiontk.tasks.recipes import recipe_from_dict


def _recipe(backbone: str, pool: str = "avg", **options) -> object:
    return recipe_from_dict({"task": "classify", "model": {"backbone": backbone, "in_channels": 1, "head": {"pool": pool},
                                                           "backbone_options": options},
                             "data": {"format": "signals", "root": "unused", "options": {"length": 40}}})


def test_course_network_sizes():
    # The course: the 1-D CNN has 2,050 parameters and the fully-connected one 150,185
    # (40 samples, 10 classes); here with the classify head that each recipe uses.
    assert count_parameters(build_model(_recipe("conv1d_mnist1d", "flatten"), 10)) == 2050
    assert count_parameters(build_model(_recipe("mlp"), 10)) == 150185


def receptive_field(backbone, length: int = 129) -> int:
    """The span of input samples that reach the middle output position of the deepest feature
    (gradient != 0; a dilated stack may skip samples inside it); positive weights and input,
    and no bias, so that no ReLU hides a path."""
    backbone = backbone.eval()
    with torch.no_grad():
        for m in backbone.modules():
            if isinstance(m, torch.nn.Conv1d):
                m.weight.fill_(0.1)
                if m.bias is not None:
                    m.bias.zero_()
    x = torch.ones(1, 1, length, requires_grad=True)
    f = backbone(x)[-1]
    f[0, :, f.shape[-1] // 2].sum().backward()
    reached = torch.nonzero(x.grad[0, 0]).flatten()
    return int(reached[-1] - reached[0] + 1)


@pytest.mark.parametrize("name", ["conv1d_mnist1d", "resnet1d"])
def test_1d_contract_and_dilation(name, one_thread):
    torch.manual_seed(0)
    plain = create_backbone(name, in_channels=1)
    dilated = create_backbone(name, in_channels=1, dilation=2)
    # Same channels and strides (in samples), whatever the dilation.
    assert plain.out_channels == dilated.out_channels and plain.strides == dilated.strides
    assert plain.strides == sorted(plain.strides) and len(plain.strides) >= 3
    if name == "resnet1d":  # padded: the length of feature i is ceil(L / stride i)
        for length in (40, 57):
            feats = plain.eval()(torch.randn(2, 1, length))
            assert [tuple(f.shape) for f in feats] == [(2, c, -(-length // s)) for c, s in zip(plain.out_channels, plain.strides)]
    # Dilation grows the receptive field without pooling: measured by what reaches an output.
    assert receptive_field(dilated) > receptive_field(plain)
    if name == "conv1d_mnist1d":  # 3 taps, stride 2, three times: 1 + 2 + 4 + 8 = 15 samples; dilated 1 + 2*(2+4+8) = 29
        assert (receptive_field(plain), receptive_field(dilated)) == (15, 29)


def test_signal_file_formats_agree(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 12)).astype(np.float32)
    y = np.array([0, 2, 1, 2, 0, 1])
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.save(tmp_path / "train.npy", x)
    np.save(tmp_path / "train_labels.npy", y)
    header = ",".join([f"v{i}" for i in range(6)] + ["label"] + [f"w{i}" for i in range(6)])  # label column anywhere
    rows = [",".join([*map(repr, map(float, r[:6])), ["a", "b", "c"][k], *map(repr, map(float, r[6:]))])
            for r, k in zip(x, y)]
    (tmp_path / "train.csv").write_text("\n".join([header, *rows]) + "\n")
    options = SignalOptions()
    got = {s: read_signal_file(tmp_path / f"train{s}", options, "train") for s in (".npz", ".npy", ".csv")}
    for s, (xs, labels, _) in got.items():
        assert xs.shape == (6, 1, 12) and np.array_equal(xs[:, 0], x), s
    assert label_indices(got[".npz"][1], None, tmp_path)[1] == ["0", "1", "2"]
    idx, names = label_indices(got[".csv"][1], None, tmp_path)
    assert names == ["a", "b", "c"] and idx.tolist() == y.tolist()
    with pytest.raises(UserError, match="no 'target' column"):
        read_signal_file(tmp_path / "train.csv", SignalOptions(label_column="target"), "train")
    with pytest.raises(UserError, match="label 2 is out of range for 2 classes"):
        label_indices(got[".npz"][1], ["a", "b"], tmp_path)


def test_signal_preprocess_reads_lines_and_resamples(tmp_path):
    pre = SignalPreprocess(length=5, mean=(1.0,), std=(2.0,))
    x, _ = pre.decode(StdinLine(1, "1, 3 5\t7 9"))
    assert x.tolist() == [[1, 3, 5, 7, 9]]
    assert pre.normalize(pre.finish(x)).tolist() == [[0.0, 1.0, 2.0, 3.0, 4.0]]
    # Another length is resampled linearly, end points kept (as an image is resized).
    assert pre.finish(np.array([[0.0, 8.0]], dtype=np.float32)).tolist() == [[0.0, 2.0, 4.0, 6.0, 8.0]]
    batch = torch.stack([torch.as_tensor(pre.finish(x))] * 2)
    assert torch.equal(pre.normalize_batch(batch)[0], pre.normalize(pre.finish(x)))
    for bad in ("1 2 x", "nan 1 2", "3"):
        with pytest.raises(DataError, match="<stdin>:7"):
            pre.decode(StdinLine(7, bad))


def test_mnist1d_synth_is_offline_and_standard(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    from visiontk.data.synth_signals import synth_signals

    state = np.random.get_state()[1].copy()
    summary = synth_signals(tmp_path / "a", n=200, seed=42)
    assert np.array_equal(np.random.get_state()[1], state)  # the global generator is left as it was
    assert (summary["train"], summary["val"], summary["length"]) == (160, 40, 40)
    a = np.load(tmp_path / "a" / "train.npz")
    assert a["x"].shape == (160, 40) and a["x"].dtype == np.float32 and set(a["y"].tolist()) == set(range(10))
    synth_signals(tmp_path / "b", n=200, seed=42)
    assert (tmp_path / "a" / "val.npz").read_bytes() == (tmp_path / "b" / "val.npz").read_bytes()


@pytest.fixture(scope="module")
def trained_signals(tmp_path_factory):
    from visiontk.data.synth_signals import synth_signals

    root = tmp_path_factory.mktemp("signals")
    synth_signals(root / "mnist1d", n=200)  # here: the mnist1d package is imported once for the module
    runs = root / "runs"
    r = run_cli("classify", "train", "classify/mnist1d-cnn", "--set", f"data.root={root / 'mnist1d'}",
                "--set", "train.epochs=1", "--project", str(runs), "--name", "cnn")
    assert r.returncode == 0, r.stderr
    return root, runs / "classify" / "cnn" / "best.pt"


def test_signals_cli_end_to_end(trained_signals, tmp_path):
    root, ckpt = trained_signals
    val = np.load(root / "mnist1d" / "val.npz")
    np.save(tmp_path / "one.npy", val["x"][0])
    lines = "".join(" ".join(f"{v:.6f}" for v in row) + "\n" for row in val["x"][:2])
    r = run_cli("classify", "predict", str(ckpt), str(tmp_path / "one.npy"), "-", "--topk", "3",
                stdin=lines + "not numbers\n")
    assert r.returncode == 1, r.stderr  # one unreadable input: its error record, exit 1
    assert "1 of 4 signals could not be read" in r.stderr  # signals, not images
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["path"] for rec in records] == [str(tmp_path / "one.npy"), "<stdin>:1", "<stdin>:2", "<stdin>:3"]
    assert records[0]["topk"] == records[1]["topk"]  # the same signal from a file and from a line
    assert len(records[1]["topk"]) == 3 and "error" in records[3]

    r = run_cli("classify", "predict", str(ckpt), str(tmp_path / "one.npy"))
    assert r.returncode == 0 and "predicted 1 signal;" in r.stderr

    r = run_cli("classify", "eval", str(ckpt), "--json")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)
    assert metrics["count"] == 40 and 0.0 <= metrics["top1"] <= 1.0

    out = tmp_path / "m.torchscript.pt"
    r = run_cli("export", str(ckpt), "--format", "torchscript", "--out", str(out))
    assert r.returncode == 0, r.stderr
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    assert meta["input"]["shape"] == [1, 1, 40] and meta["input"]["preprocess"]["kind"] == "signal"
