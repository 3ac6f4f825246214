"""Resume is exact: 2 epochs in one go equal 1 epoch + resume + 1 epoch."""
import torch
from helpers import run_cli


def test_resume_gives_the_same_weights(tmp_path):
    from visiontk.data.synth import synth_classify

    data = tmp_path / "data"
    # 72 training images, 5 batches an epoch: a warmup of 2 fits the 1-epoch run too (more than
    # half of a run's iterations would be cut, engine/fit_to_data.py, and differ between the runs).
    synth_classify(data, n=96, size=32, seed=1)
    common = ["--set", f"data.root={data}", "--set", "data.image_size=32", "--set", "train.schedule=step",
              "--set", "train.step_size=1", "--set", "train.gamma=0.5", "--set", "train.batch_size=16",
              "--set", "model.backbone_options.width=4", "--set", "train.warmup_iters=2",
              "--set", "output.plots=false", "--project", str(tmp_path / "runs")]
    full = run_cli("classify", "train", "classify/shapes", *common, "--set", "train.epochs=2", "--name", "full")
    assert full.returncode == 0, full.stderr
    half = run_cli("classify", "train", "classify/shapes", *common, "--set", "train.epochs=1", "--name", "half")
    assert half.returncode == 0, half.stderr
    last = tmp_path / "runs" / "classify" / "half" / "last.pt"
    resumed = run_cli("classify", "train", "classify/shapes", *common, "--set", "train.epochs=2", "--resume", str(last))
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "runs" / "classify" / "full" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["epoch"] for r in b["history"]] == [1, 2]
    lines = (tmp_path / "runs" / "classify" / "half" / "results.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]
    # per_class.csv is rebuilt from last.pt too: the first epoch's rows come from the checkpoint.
    per_class = (tmp_path / "runs" / "classify" / "half" / "per_class.csv").read_text().splitlines()
    assert [line.split(",")[:2] for line in per_class[1:]] == [[e, c] for e in "12" for c in ("circle", "square", "triangle")]
