"""One predict job split two ways gives exactly the output of one process.

- 2 ranks: the CLI in two processes with the environment torchrun gives its
  workers (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; forked from the
  warm test process instead of started by torchrun's agent, which
  tests/test_ddp.py and tests/test_multinode.py run for real). Rank 0 reads the
  input, rank 1's stdin holds other paths: read by rank 1, they would show up.
- 2 shards: `--shard 0/2` and `--shard 1/2`, merged by `visiontk merge`.

The inputs hold an odd number of images (uneven parts), spread over several
rounds of dealing (batch 1, 2 ranks: rounds of 8), with names that are not
numbers, so COCO image ids are positions in the whole input. Batches of one
image: a batch of other images changes a float's last bits (0.180646 against
0.180647 after rounding, as one process with another --batch-size gives), and
the outputs are compared exactly.
"""
from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch
from helpers import _child, _env, run_cli, run_warm
from untrained import save_untrained_checkpoint

from visiontk.data.synth import synth_classify, synth_detect, synth_segment

TINY = ["model.backbone_options.width=4"]
# Outputs are compared exactly across processes: --precision auto could pick bf16 in one
# process and fp32 in another where the two measure close (an AMX CPU: bf16 5.6 ms against
# fp32 6.2 ms for a tiny model), so the precision is fixed.
FP32 = ["--precision", "fp32"]
CHECKPOINTS = {
    "classify": ("classify/shapes", ["data.image_size=32"], ["circle", "square", "triangle"]),
    "detect": ("detect/shapes", ["data.image_size=64", "model.head.S=4", "model.head.width=8"],
               ["circle", "square", "triangle"]),
    "segment": ("segment/shapes-unet", ["data.image_size=32"], ["background", "circle", "square", "triangle"]),
}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Untrained tiny checkpoints (random BatchNorm statistics: outputs differ from image to
    image) and 35 images per task, renamed so that no name is a number."""
    root = tmp_path_factory.mktemp("sharded")
    made = {}
    for task, synth, size in (("classify", synth_classify, 32), ("detect", synth_detect, 64),
                              ("segment", synth_segment, 32)):
        synth(root / f"{task}-set", n=140, size=size, seed=5)
        images = root / task
        images.mkdir()
        found = sorted(p for p in (root / f"{task}-set").rglob("*.png") if "val" in p.parts and "masks" not in p.parts)
        for k, p in enumerate(found[:35]):
            shutil.copy(p, images / f"img{k:02d}-{p.parent.name}.png")
        recipe, overrides, classes = CHECKPOINTS[task]
        made[task] = save_untrained_checkpoint(root / "ckpt" / task / "best.pt", recipe,
                                               [*TINY, *overrides, f"data.root={root / f'{task}-set'}"], classes)
    # A sharper classifier head: untrained, its probabilities differ only in the 6th digit.
    ckpt = torch.load(made["classify"], weights_only=True)
    ckpt["model"]["head.fc.2.weight"] *= 100
    torch.save(ckpt, made["classify"])
    return root, made


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(args: list[str], workdir: Path, stdin: dict[int, str]) -> list[str]:
    """`visiontk ARGS` as 2 torchrun workers on this host; their stdout and stderr."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    runs = []
    for rank in range(2):
        env = _env({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2",
                    "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        files = [workdir / f"{name}{rank}" for name in ("stdin", "stdout", "stderr")]
        files[0].write_text(stdin.get(rank, ""))
        for f in files[1:]:
            f.write_text("")
        runs.append(([str(a) for a in args], env, None, *map(str, files), None))
    try:
        run_warm(_child, runs)
    except AssertionError:
        raise AssertionError("\n".join((workdir / f"stderr{r}").read_text() for r in range(2))) from None
    return [(workdir / f"stdout{r}").read_text() for r in range(2)] + [(workdir / f"stderr{r}").read_text() for r in range(2)]


def _ok(result):
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_classify_jsonl_two_ranks_and_two_shards_match_one_process(job, tmp_path):
    root, ckpt = job
    images = root / "classify"
    names = sorted(images.iterdir())
    # Sources of every kind: a glob, a file, the folder's rest read from stdin.
    pattern, first = str(images / "img0*.png"), names[10]
    stdin = "".join(f"{p}\n" for p in names[11:])
    args = ["classify", "predict", ckpt["classify"], pattern, first, "-", "--batch-size", "1", "--device", "cpu", *FP32]
    one = _ok(run_cli(*args, stdin=stdin)).stdout
    records = [json.loads(line) for line in one.splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in names]
    assert len({r["prob"] for r in records}) > 20  # outputs that differ from image to image

    out0, out1, err0, err1 = _two_ranks(args, tmp_path / "ranks", {0: stdin, 1: f"{root / 'detect' / names[0].name}\n"})
    assert out0 == one and out1 == ""  # rank 0 writes all, in input order
    assert "predicted 35 images on 2 processes" in err0 and "predicted" not in err1

    parts = []
    for i in range(2):
        part = tmp_path / f"part{i}.jsonl"
        res = _ok(run_cli(*args, "--shard", f"{i}/2", "--out", part, stdin=stdin))
        assert f"shard {i}/2 of 35" in res.stderr
        parts.append(part)
    assert [len(p.read_text().splitlines()) for p in parts] == [18, 17]
    merged = _ok(run_cli("merge", *parts))
    assert merged.stdout == one
    # Given out of order, parts whose counts cannot be those of shards 0/2, 1/2 are refused.
    bad = run_cli("merge", parts[1], parts[0], parts[0])
    assert bad.returncode == 2 and "not those of the parts of one --shard run" in bad.stderr


def test_detect_coco_two_ranks_and_two_shards_match_one_process(job, tmp_path):
    root, ckpt = job
    args = ["detect", "predict", ckpt["detect"], root / "detect", "--format", "coco", "--conf", "0.01",
            "--batch-size", "1", "--device", "cpu", *FP32]
    _ok(run_cli(*args, "--out", tmp_path / "one.json"))
    one = (tmp_path / "one.json").read_text()
    detections = json.loads(one)
    # Detections on most images, image ids = positions in the input (1-based; no name is a number).
    assert len({d["image_id"] for d in detections}) > 20
    by_name = {d["file_name"]: d["image_id"] for d in detections}
    assert all(by_name[str(p)] == k + 1 for k, p in enumerate(sorted((root / "detect").iterdir())) if str(p) in by_name)

    _two_ranks([*args, "--out", tmp_path / "ranks.json"], tmp_path / "ranks", {})
    assert (tmp_path / "ranks.json").read_text() == one

    parts = [tmp_path / f"part{i}.json" for i in range(2)]
    for i, part in enumerate(parts):
        _ok(run_cli(*args, "--shard", f"{i}/2", "--out", part))
    _ok(run_cli("merge", *parts, "--out", tmp_path / "merged.json"))
    merged = json.loads((tmp_path / "merged.json").read_text())
    # The same detections with the same values, image ids included (COCO results have no order).
    key = lambda d: json.dumps(d, sort_keys=True)  # noqa: E731
    assert sorted(map(key, merged)) == sorted(map(key, detections))


def test_segment_two_ranks_write_each_mask_once_as_one_process(job, tmp_path):
    root, ckpt = job
    images = root / "segment"
    # Two images of the same name in two folders: one process names the second mask x-2.png.
    (images / "again").mkdir(exist_ok=True)
    shutil.copy(images / "img03-images.png", images / "again" / "img00-images.png")
    args = ["segment", "predict", ckpt["segment"], images, "--batch-size", "1", "--device", "cpu", *FP32]
    one = _ok(run_cli(*args, "--out-dir", tmp_path / "one")).stdout
    out0, out1, _, _ = _two_ranks([*args, "--out-dir", tmp_path / "ranks"], tmp_path / "ranks-logs", {})
    assert out0 == one.replace(str(tmp_path / "one"), str(tmp_path / "ranks")) and out1 == ""
    masks = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len(masks) == 36 and "img00-images-2.png" in masks
    assert sorted(p.name for p in (tmp_path / "ranks").iterdir()) == masks
    for name in masks:
        assert (tmp_path / "ranks" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()


def test_csv_parts_merge_in_input_order_whatever_columns_a_part_has(tmp_path):
    from visiontk.outputs.merge import merge_parts
    from visiontk.outputs.output_file import OutputFile

    # Shard 1 read only an unreadable image: its part has the columns path and error alone.
    (tmp_path / "p0.csv").write_text('path,label,prob,error\na.png,circle,0.9,\nc.png,square,0.8,\n')
    (tmp_path / "p1.csv").write_text('path,error\nb.png,"cannot read, truncated"\n')
    assert merge_parts([tmp_path / "p0.csv", tmp_path / "p1.csv"], OutputFile(tmp_path / "all.csv")) == ("csv", 3)
    assert (tmp_path / "all.csv").read_text().splitlines() == [
        "path,label,prob,error", "a.png,circle,0.9,", 'b.png,,,"cannot read, truncated"', "c.png,square,0.8,"]


def test_a_bad_shard_is_one_line_and_exit_2(job):
    from visiontk.engine.sharding import Shard
    from visiontk.errors import UserError

    root, ckpt = job
    res = run_cli("classify", "predict", ckpt["classify"], root / "classify", "--shard", "2/2")
    assert res.returncode == 2 and res.stderr == "error: --shard 2/2: expected I/N with 0 <= I < N, e.g. 0/4 ... 3/4\n"
    for bad in ("1", "-1/2", "a/b", "0/0", "1/2/3"):
        with pytest.raises(UserError, match=f"--shard {bad}: expected I/N"):
            Shard.parse(bad)
    assert Shard.parse(" 3 / 4 ") == Shard(3, 4)
