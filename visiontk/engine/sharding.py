"""One predict job split across processes: torchrun's ranks, or `--shard I/N` jobs.

Either way the images are dealt round robin over the input stream: image i
(0-based, in input order, after the output rules left out what they leave
out) is predicted by shard i mod N.

- Under torchrun (WORLD_SIZE > 1), rank 0 alone reads the sources -- folders,
  globs, list files and `-` (stdin, which torchrun gives every local process)
  -- and deals the paths out over the process group, in rounds of
  N x batch x 4 paths. Every rank predicts its part; the records come back to
  rank 0, which writes them in input order through the writers one process
  uses: one jsonl/csv/COCO file, each mask or label file written once, under
  the names one process gives. Three threads per rank keep it streaming
  without deadlock: the main one deals and predicts, the predictor's own
  finisher only queues records, and a merging thread gathers each round
  (its own gloo group, so the two threads never share a collective).
- With `--shard I/N` (no process group: job arrays, xargs, parallel) a
  process reads every source itself, predicts the images with i mod N == I,
  and writes them as one process would, numbering images (COCO's positional
  image_id) by their place in the whole input; `visiontk merge` puts the N
  parts back into one result in input order (outputs/merge.py).
"""
from __future__ import annotations

import itertools
import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch.distributed as dist

from visiontk.console import plural, warn
from visiontk.data.sources import iter_sources
from visiontk.engine import distributed
from visiontk.engine.progress import ProgressBar
from visiontk.errors import UserError

# Batches per rank in a round: rounds are where the ranks wait for each other.
ROUND_BATCHES = 4


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """'I/N', 0 <= I < N (Slurm's $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
            raise UserError(f"--shard {text}: expected I/N with 0 <= I < N, e.g. 0/4 ... 3/4")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def numbered(paths: Iterable[Path], shard: Shard | None, seen: list[int]) -> Iterator[tuple[int, Path]]:
    """(input position, path) of the images `shard` takes (all without one); `seen[0]`
    counts every image of the input, taken or not."""
    for i, path in enumerate(paths):
        seen[0] = i + 1
        if shard is None or i % shard.count == shard.index:
            yield i, path


class _Positions:
    """Hands records to `writer`, first telling it how many images of the input
    (another shard's) came between two of them: numbering stays global."""

    def __init__(self, writer: Callable[[dict], None]):
        self.writer, self.last = writer, -1
        self.skip = getattr(writer, "skip", None)

    def __call__(self, position: int, record: dict) -> None:
        gap = position - self.last - 1
        if gap and self.skip is not None:
            self.skip(gap)
        self.last = position
        self.writer(record)


def run_shard(run: Callable[..., dict], shard: Shard, paths: Iterable[Path], writer, flush=None) -> dict:
    """`run` (a Predictor's) over the images of `shard` alone; stats with 'inputs',
    the number of images of the whole input."""
    seen = [0]
    positions: queue.SimpleQueue = queue.SimpleQueue()
    to_writer = _Positions(writer)

    def mine() -> Iterator[Path]:
        for i, path in numbered(paths, shard, seen):
            positions.put(i)
            yield path

    # The predictor writes one record per path, in order: the positions queue lines up.
    stats = run(mine(), lambda record: to_writer(positions.get(), record), flush=flush)
    stats["inputs"] = seen[0]
    if stats["images"] == 0 and seen[0]:
        warn(f"--shard {shard}: none of the {plural(seen[0], 'input')} is this shard's (more shards than inputs)")
    return stats


class RankedRun:
    """A predict job under torchrun: see the module docstring. Build it on every rank
    (it makes two gloo groups, a collective step), then call `run` on every rank."""

    def __init__(self, batch_size: int, shard: Shard | None = None):
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.shard = shard
        self.round = self.world * max(1, batch_size) * ROUND_BATCHES
        # Paths go out on one group (main thread), records come back on the other (merging thread).
        self.deal_group = dist.new_group(backend="gloo")
        self.merge_group = dist.new_group(backend="gloo")

    def run(self, run: Callable[..., dict], paths: Iterable[Path] | None, writer=None, flush=None) -> dict:
        """Rank 0: `paths` (the whole input) and the `writer` of every record; other ranks: None.
        Returns, on rank 0, the stats of the whole job ('images', 'errors', 'inputs')."""
        rounds: queue.SimpleQueue = queue.SimpleQueue()
        records: queue.SimpleQueue = queue.SimpleQueue()
        stats = {"images": 0, "errors": 0, "inputs": 0}
        failed: list[BaseException] = []
        seen = [0]
        source = numbered(paths if paths is not None else (), self.shard, seen) if self.rank == 0 else None

        def my_paths() -> Iterator[Path]:
            while True:
                chunk = list(itertools.islice(source, self.round)) if source is not None else None
                chunk = distributed.broadcast_object(chunk, group=self.deal_group)
                rounds.put(chunk)
                if not chunk:
                    return
                for _, path in chunk[self.rank::self.world]:
                    yield path

        def collect(record: dict) -> None:
            if failed:  # rank 0 could not write: stop predicting
                raise failed[0]
            records.put(record)

        merger = threading.Thread(target=self._merge, args=(rounds, records, writer, flush, stats, failed),
                                  name="visiontk-merge", daemon=True)
        merger.start()
        # An error here ends the process without waiting for the merger (a daemon thread):
        # the other ranks' collectives then fail on the closed connections and they end too.
        run(my_paths(), collect, progress=False)
        merger.join()
        if failed:
            raise failed[0]
        stats["inputs"] = seen[0]
        return stats

    def _merge(self, rounds, records, writer, flush, stats: dict, failed: list) -> None:
        to_writer = _Positions(writer) if writer is not None else None
        try:
            with ProgressBar("predict", unit="img", enabled=self.rank == 0) as bar:
                while (chunk := rounds.get()):
                    mine = [records.get() for _ in chunk[self.rank::self.world]]
                    parts = [None] * self.world if self.rank == 0 else None
                    dist.gather_object(mine, parts, dst=0, group=self.merge_group)
                    if self.rank != 0:
                        continue
                    for j, (position, _) in enumerate(chunk):
                        record = parts[j % self.world][j // self.world]
                        to_writer(position, record)
                        stats["images"] += 1
                        stats["errors"] += "error" in record
                    if flush is not None:
                        flush()
                    bar.update(len(chunk))
        except BaseException as e:  # noqa: BLE001 - re-raised by the main thread
            failed.append(e)


def predict_sources(plan: Callable, predictor_on: Callable[[str], object], sources: list[str], device: str,
                    shard: Shard | None) -> tuple[dict | None, object]:
    """Run one predict job over SOURCE arguments: `plan()` checks and returns its
    PredictionOutputs (before the model is loaded), `predictor_on(device)` loads the Predictor. One process, `shard` of the input, or -- under torchrun -- every
    rank a share of it (or of `shard`), rank 0 writing all. Returns (stats, predictor);
    stats None on torchrun's ranks other than 0."""
    world, rank, _ = distributed.launch_info()
    if world > 1:
        device = str(distributed.setup_device(device))  # joins the group; a GPU per LOCAL_RANK
    try:
        outputs, problem = None, None
        if rank == 0:
            try:
                outputs = plan()
            except UserError as e:
                problem = e
        # A bad output stops every rank before any model is loaded; rank 0 says why.
        if world > 1 and distributed.broadcast_object(None if problem is None else str(problem)) and rank != 0:
            raise SystemExit(2)
        if problem is not None:
            raise problem
        predictor = predictor_on(device)
        if world > 1:
            ranked = RankedRun(predictor.batch_size, shard)
            if rank != 0:
                ranked.run(predictor.run, None)
                return None, predictor
            job = lambda paths, writer, flush: ranked.run(predictor.run, paths, writer, flush)  # noqa: E731
        elif shard is not None:
            job = lambda paths, writer, flush: run_shard(predictor.run, shard, paths, writer, flush)  # noqa: E731
        else:
            job = predictor.run
        # SOURCE holds image paths, or signal files and stdin lines of data: the model's modality says.
        return outputs.write(job, iter_sources(sources, rule=predictor.preprocess.sources), sources), predictor
    finally:
        distributed.shutdown()
