"""predict's CPU schedule (engine/cpu_schedule.py): the trial keeps what it measured
faster, torch's thread count is given back, and no schedule changes a record.

The trial's timing is driven by a fake clock here (no time limits in tests);
benchmarks/predict_bench.py measures the real speed.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import torch_threads
from PIL import Image
from untrained import save_untrained_checkpoint

from visiontk.engine import cpu_schedule
from visiontk.engine.cpu_schedule import CpuSchedule, alternate, pipeline
from visiontk.engine.decode_batches import decode_batches
from visiontk.engine.predictor import Predictor
from visiontk.tasks.options.detect import DetectPredictOptions

CPU = torch.device("cpu")


def trial(times: dict[str, tuple[float, float]], batches: int, workers: int = 2, first: float = 0.0):
    """(schedule, [(lookahead, torch threads) each batch ran with]) after `batches` batches.

    `times`: per schedule, (the model's seconds on a batch, the rest of its period);
    `first`: added to the model's first call (one-time set-up)."""
    now = [0.0]
    schedule = CpuSchedule(None, workers, lambda: now[0])
    ran = []
    for i in range(batches):
        schedule.batch_arrived()
        ran.append((schedule.lookahead(), torch.get_num_threads()))
        model, rest = times[schedule.current.name]
        now[0] += model + (first if i == 0 else 0.0)
        schedule.model_done()
        now[0] += rest
    return schedule, ran


# Periods as measured on the detect demo (2-core Xeon): 36 ms a batch taking turns, 30 as a pipeline.
DETECT_DEMO = {"alternate": (0.010, 0.026), "pipeline": (0.0127, 0.0173)}


def test_the_trial_keeps_the_pipeline_when_it_measured_faster_and_gives_the_threads_back():
    with torch_threads(2):
        schedule, ran = trial(DETECT_DEMO, batches=14, first=0.5)
        trial_length = 2 * (cpu_schedule.SETTLE + cpu_schedule.TIMED) + 1
        # Taking turns on both threads first, then the pipeline: the model on the core the 2 decoders leave
        # (at least 1), one batch decoded ahead; the rest of the run keeps the pipeline.
        assert ran[:cpu_schedule.SETTLE + cpu_schedule.TIMED] == [(0, 2)] * (cpu_schedule.SETTLE + cpu_schedule.TIMED)
        assert ran[cpu_schedule.SETTLE + cpu_schedule.TIMED:] == [(1, 1)] * (14 - cpu_schedule.SETTLE - cpu_schedule.TIMED)
        assert schedule.decided == pipeline(2, 2) and trial_length <= 14
        assert "ahead of the model on 1 thread" in schedule.describe()
        assert "a batch every 30.0 ms as a pipeline, every 36.0 ms taking turns" in schedule.describe()
        schedule.close()
        assert torch.get_num_threads() == 2


def test_the_trial_takes_turns_when_the_pipeline_is_not_clearly_faster():
    """3% faster is not enough for a second batch in memory and a core given up."""
    with torch_threads(2):
        schedule, ran = trial({"alternate": (0.010, 0.026), "pipeline": (0.0127, 0.0223)}, batches=12)
        assert schedule.decided == alternate(2)
        assert ran[-3:] == [(0, 2)] * 3  # back on both threads, taking turns
        assert "taking turns with the model (auto: a batch every 35.0 ms as a pipeline, every 36.0" in schedule.describe()
        schedule.close()
        assert torch.get_num_threads() == 2


def test_a_model_slower_alone_than_a_batch_taking_turns_ends_the_trial_at_once():
    """resnet18 at 224 on a 2-core Xeon: 445 ms a batch on 2 threads, 785 on 1. A pipeline
    cannot beat 470 ms a batch when its model alone takes 785: one pipelined batch, then
    back to taking turns, instead of four."""
    with torch_threads(2):
        schedule, ran = trial({"alternate": (0.445, 0.025), "pipeline": (0.785, 0.040)}, batches=8)
        turns = cpu_schedule.SETTLE + cpu_schedule.TIMED
        assert ran == [(0, 2)] * turns + [(1, 1)] + [(0, 2)] * (8 - turns - 1)
        assert schedule.decided == alternate(2)
        assert "the model alone took 785.0 ms a batch on 1 thread, a batch taking turns 470.0 ms" in schedule.describe()


def test_the_first_period_of_each_schedule_is_not_timed():
    """The model's first call (one-time kernel set-up) and the first pipelined batch
    (nothing decoded ahead yet) would otherwise decide the trial."""
    with torch_threads(2):
        # Taking turns is faster once settled; its first period (first=2 s) would make it look slow.
        schedule, _ = trial({"alternate": (0.010, 0.020), "pipeline": (0.0127, 0.0233)}, batches=12, first=2.0)
        assert schedule.decided == alternate(2)
        assert np.allclose(schedule.periods, [[0.030] * cpu_schedule.TIMED, [0.036] * cpu_schedule.TIMED])


def test_a_run_too_short_to_compare_says_so_and_gives_the_threads_back():
    with torch_threads(2):
        schedule, ran = trial(DETECT_DEMO, batches=6)
        assert schedule.decided is None and ran[-1] == (1, 1)  # ended during the pipeline's turn
        assert "too few batches" in schedule.describe()
        schedule.close()
        assert torch.get_num_threads() == 2


def test_a_lookahead_that_changes_between_batches_keeps_the_batches_in_order(tmp_path):
    """The trial switches the decoders from taking turns to decoding ahead and back mid-stream."""
    pulled = []

    def paths():
        for i in range(40):
            pulled.append(i)
            yield tmp_path / f"{i}.jpg"

    def load(path):
        return np.full((2, 2, 3), int(path.stem), np.uint8), {"path": str(path)}

    ahead = iter([0, 0, 0, 1, 1, 1, 3, 3, 0, 0] + [0] * 20)
    current = [0]

    def lookahead():
        return current[0]

    read_at, values = [], []
    for batch in decode_batches(paths(), load, 4, 2, CPU, "threads", lookahead):
        read_at.append(len(pulled))
        current[0] = next(ahead)
        values += [int(px[0, 0, 0]) for px, _ in batch]
    assert values == list(range(40))
    # Taking turns: the batch handed out is the last one read; one ahead from the 5th batch
    # on (two read after the switch), three ahead from the 8th (the rest of the input).
    assert read_at == [4, 8, 12, 16, 24, 28, 32, 40, 40, 40]


@pytest.fixture(scope="module")
def detect_jpegs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(30):
        arr = rng.integers(0, 255, (60 + i, 80, 3), dtype=np.uint8)
        arr[10:40, 20:50] = (200, 40, 40)  # a block the random detector can fire on
        p = folder / f"{i:03d}.jpg"
        Image.fromarray(arr).save(p, quality=90)
        paths.append(p)
    return paths


def test_every_cpu_schedule_writes_the_same_records_and_restores_torch_threads(tmp_path, detect_jpegs):
    """The detect demo's architecture at 64 px, untrained, with a low threshold (many boxes):
    taking turns on 2 threads, a pipeline with the model on 1, and auto (both, then its
    pick) write the same records, bit for bit; the model ran on the threads each schedule says."""
    ckpt = save_untrained_checkpoint(tmp_path / "det.pt", "detect/shapes", ["data.image_size=64"],
                                     ["circle", "square", "triangle"])
    outputs = {}
    with torch_threads(2):
        for loader in ("threads", "pipeline", "auto"):
            p = Predictor(ckpt, "detect", device="cpu", batch_size=2, workers=2, precision="fp32", loader=loader,
                          options=DetectPredictOptions(conf=0.01))
            threads_seen = []
            forward = p._forward

            def counted(pixels, forward=forward, seen=threads_seen):
                seen.append(torch.get_num_threads())
                return forward(pixels)

            p._forward = counted
            records = []
            stats = p.run(iter(detect_jpegs), records.append)
            assert stats == {"images": 30, "errors": 0}
            assert torch.get_num_threads() == 2, loader
            outputs[loader] = [json.dumps(r, sort_keys=True) for r in records]
            if loader == "threads":
                assert set(threads_seen) == {2}
            elif loader == "pipeline":
                assert set(threads_seen) == {1}
            else:
                assert p.schedule.decided is not None  # 15 batches: the trial ended
                assert threads_seen[:4] == [2] * 4 and threads_seen[4:8] == [1] * 4
                assert set(threads_seen[8:]) == {p.schedule.decided.model_threads}
                assert "(auto: a batch every" in p.describe()
    assert sum(len(json.loads(r)["boxes"]) for r in outputs["threads"]) > 30  # the records say something
    assert outputs["pipeline"] == outputs["threads"]
    assert outputs["auto"] == outputs["threads"]
