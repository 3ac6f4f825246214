"""What a run asks of the machine, checked against what the machine has, before any work.

- DataLoader workers beyond the CPUs the process may use only add processes
  competing for the same cores (and each holds a copy of the data set
  object): they are capped, with a note.
- A first batch whose float32 tensor alone exceeds the available memory would
  end minutes later in an OOM kill or a MemoryError deep in collation: refused
  with the numbers, while the user can still change them.
"""
from __future__ import annotations

import os

from visiontk.console import info
from visiontk.errors import UserError


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a container's or Slurm's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cap_workers(requested: int, key: str) -> int:
    """`requested` workers, at most one per usable CPU (a one-line note when capped)."""
    cpus = usable_cpus()
    if requested > cpus:
        info(f"note: {key} {requested} is more than the {cpus} CPUs this process can use; using {cpus}")
        return cpus
    return requested


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _size(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def check_batch_memory(key: str, batch: int, channels: int, height: int, width: int) -> None:
    """Refuse a batch whose float32 input tensor (batch x channels x H x W x 4 bytes) exceeds the available memory."""
    needed = batch * channels * height * width * 4
    available = available_memory()
    if available is not None and needed > available:
        raise UserError(f"{key} {batch}: one batch of {batch} x {channels} x {height} x {width} float32 values needs "
                        f"{_size(needed)}, more than the {_size(available)} of memory available; "
                        f"lower the batch size or data.image_size")
