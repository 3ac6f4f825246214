"""A full disk, for real: a 16 KB tmpfs filled to the last block, then a command writing into it.

Every command: exit 2, one line naming the file the user asked for (not a temp name),
and no temp file left behind. Mounting needs root (or CAP_SYS_ADMIN); the tests say
so and skip where the machine cannot mount.
"""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from .support import assert_error, invoke, pattern_image

FULL = "cannot write (No space left on device)"


@pytest.fixture
def full_disk(tmp_path) -> Path:
    """A mounted tmpfs with no free block left; only its filler file in it."""
    disk = tmp_path / "full"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        with open(disk / "filler", "wb", buffering=0) as f:
            with pytest.raises(OSError) as e:
                while True:
                    f.write(b"\0" * 4096)
            assert e.value.errno == errno.ENOSPC
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _left(disk: Path) -> list[str]:
    return sorted(os.listdir(disk))


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "x.png"
    pattern_image().save(path)
    return path


def test_predict_results_file_on_a_full_disk(tiny_ckpt, image, full_disk):
    out = invoke("classify", "predict", tiny_ckpt, image, "--out", full_disk / "x.csv")
    assert_error(out, f"{full_disk / 'x.csv'}: {FULL}", alone=False)
    # A new results file is streamed into place (a reader may follow it): what was written
    # before the disk filled stays -- here nothing. No temp file.
    assert _left(full_disk) == ["filler", "x.csv"] and (full_disk / "x.csv").stat().st_size == 0


def test_export_on_a_full_disk(tiny_ckpt, full_disk):
    """Before: libtorch's zip writer threw from a destructor: abort, exit 134, a core, the temp file left."""
    out = invoke("export", tiny_ckpt, "--format", "torchscript", "--out", full_disk / "m.pt")
    assert_error(out, f"{full_disk / 'm.pt'}: {FULL}", alone=False)
    assert _left(full_disk) == ["filler"]


def test_data_synth_on_a_full_disk(full_disk):
    """Before: the set's folder and a .synth.json.tmp were left."""
    out = invoke("data", "synth", "--task", "classify", "--out", full_disk / "set", "--n", "4", "--size", "16")
    assert_error(out, f"{full_disk / 'set' / 'synth.json'}: {FULL}")
    assert _left(full_disk) == ["filler"]


def test_transfer_embed_on_a_full_disk(tiny_ckpt, image, full_disk):
    out = invoke("transfer", "embed", tiny_ckpt, image, "--out", full_disk / "e.npy")
    assert_error(out, f"{full_disk / 'e.npy'}: {FULL}", alone=False)
    assert _left(full_disk) == ["filler"]
