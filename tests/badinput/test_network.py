"""No network access at run time: train and predict with every internet connection refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .support import TINY, pattern_image

# Runs several visiontk command lines in one process with internet sockets and
# name resolution replaced by functions that log the attempt and fail. Unix
# sockets stay usable: DataLoader workers pass file descriptors through them.
RUNNER = r'''
import json, socket, sys
log, commands, codes = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]

def refuse(*args, **kwargs):
    with open(log, "a") as f:
        f.write(repr(args[1:3]) + "\n")
    raise OSError("network access blocked by the test")

real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

def connect(self, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        refuse(self, *args)
    return real_connect(self, *args)

def connect_ex(self, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        refuse(self, *args)
    return real_connect_ex(self, *args)

socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
socket.getaddrinfo = socket.create_connection = socket.gethostbyname = refuse

from visiontk.cli import app
results = []
for argv in commands:
    try:
        app(argv, prog_name="visiontk")
        results.append(0)
    except SystemExit as e:
        results.append(e.code or 0)
    sys.stdout.flush(); sys.stderr.flush()
open(codes, "w").write(json.dumps(results))
'''


def test_train_and_predict_with_the_network_blocked(tiny_data, tmp_path):
    log, codes = tmp_path / "connections.log", tmp_path / "codes.json"
    image = tmp_path / "x.png"
    pattern_image().save(image)
    runs = tmp_path / "runs"
    commands = [
        ["classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}", "--set", "train.workers=1",
         "--project", str(runs), "--name", "offline"],
        ["classify", "predict", str(runs / "classify" / "offline" / "best.pt"), str(image)],
        # Asked for ImageNet weights that are not in the (empty) torch cache: an error, not a download.
        ["classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}",
         "--set", "model.backbone=resnet18", "--set", "model.backbone_options={}", "--set", "model.pretrained=imagenet",
         "--project", str(runs)],
    ]
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}  # the product must set it itself
    env.update(TORCH_HOME=str(tmp_path / "torch-home"), COLUMNS="200")
    r = subprocess.run([sys.executable, "-c", RUNNER, str(log), json.dumps(commands), str(codes)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert json.loads(codes.read_text()) == [0, 0, 2], r.stderr
    assert not log.exists(), log.read_text()
    record = json.loads(r.stdout.splitlines()[0])
    assert record["path"] == str(image) and record["label"] in ("circle", "square", "triangle")
    error = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "Traceback" not in r.stderr
    assert error[0].startswith("error: ImageNet weights for resnet18 (IMAGENET1K_V1) are not in the local cache: "
                               f"put resnet18-f37072fd.pth into {tmp_path / 'torch-home' / 'hub' / 'checkpoints'}")
    assert [p for p in (tmp_path / "torch-home").rglob("*") if p.is_file()] == []  # nothing downloaded
