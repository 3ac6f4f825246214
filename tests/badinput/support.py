"""Helpers for the bad-input corpus: running the CLI, writing bad files, checking outcomes."""
from __future__ import annotations

import io
import os
import re
import struct
import traceback
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from helpers import run_cli
from PIL import Image

# VISIONTK_BADINPUT_SUBPROCESS=1 runs every case as a real `python -m visiontk`
# process; by default most run in this process (torch is already imported, so a
# case costs milliseconds instead of seconds) and a few always run as processes.
ALL_SUBPROCESS = os.environ.get("VISIONTK_BADINPUT_SUBPROCESS") == "1"

TINY = [  # a run that takes about a second: 32 px, tinycnn width 4
    "--set", "data.image_size=32", "--set", "model.backbone_options.width=4", "--set", "train.epochs=1",
    "--set", "train.batch_size=8", "--set", "output.plots=false", "--set", "data.synthetic=null",
    "--set", "train.warmup_iters=0",
]


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        # Without the one line predict says when it first times fp32 against bf16 on this
        # CPU and model (engine/runtime_choice.py): the first run of a model in a test
        # process says it, later ones do not, and these tests are about the problem lines.
        return [line for line in self.stderr.splitlines() if not line.startswith("auto: ")]


def invoke(*args: str, stdin: str | None = None, subprocess: bool = False) -> Outcome:
    """`visiontk ARGS` with its exit code, stdout and stderr.

    In this process through typer's runner, or as a real process (`run_cli`)
    with `subprocess=True` -- needed when DataLoader worker processes print.
    """
    if subprocess or ALL_SUBPROCESS:
        r = run_cli(*map(str, args), stdin=stdin)
        return Outcome(r.returncode, r.stdout, r.stderr)
    from typer.testing import CliRunner

    from visiontk.cli import app
    from visiontk.commands.errors import STATE

    result = CliRunner().invoke(app, [str(a) for a in args], input=stdin)
    STATE["debug"] = False
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # Escaped the CLI's handler: show it as the user would see it (a traceback).
        stderr += "".join(traceback.format_exception(result.exception))
    return Outcome(result.exit_code, result.stdout, stderr)


def _matches(line: str, expected: str | re.Pattern) -> bool:
    return bool(expected.fullmatch(line)) if isinstance(expected, re.Pattern) else line == expected


def assert_error(out: Outcome, message: str | re.Pattern, code: int = 2, alone: bool = True) -> None:
    """The run failed with exit `code` and the one-line error `message` (exact, or a regex).

    `alone`: the error is all stderr holds (failures before any work starts);
    otherwise it is the last line, after progress and warnings.
    """
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = out.lines
    assert lines, "nothing on stderr"
    if alone:
        assert len(lines) == 1, out.stderr
    assert _matches(lines[-1], message if isinstance(message, re.Pattern) else f"error: {message}"), \
        f"\n{lines[-1]!r}\n!=\n{message!r}"


def warnings_of(out: Outcome) -> list[str]:
    return [line[len("warning: "):] for line in out.lines if line.startswith("warning: ")]


# ------------------------------------------------------------------ images

def pattern_image(h: int = 40, w: int = 48, seed: int = 0) -> Image.Image:
    """Asymmetric content (a bright corner block on noise): any rotation or
    flip changes the pixels, so orientation mistakes are visible."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
    a[: h // 3, : w // 2] = (250, 40, 40)
    a[h // 2:, w - w // 4:, 2] = 255
    return Image.fromarray(a)


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def write_truncated(path: Path, fmt: str) -> Path:
    data = encoded(pattern_image(), fmt)
    path.write_bytes(data[: len(data) // 2])
    return path


def write_exif_rotated(path: Path, upright: Image.Image, orientation: int = 6) -> Path:
    """A JPEG whose stored pixels are `upright` turned so that applying EXIF
    `orientation` (6: rotate 90 degrees clockwise to display) makes it upright."""
    stored = upright.transpose(Image.Transpose.ROTATE_90) if orientation == 6 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def write_corrupt_exif(path: Path) -> Path:
    """A valid JPEG whose EXIF block is garbage after its header."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(pattern_image(), "JPEG", exif=exif.tobytes())
    at = data.find(b"Exif\x00\x00") + 6
    garbage = b"II*\x00\xff\xff\xff\x7f" + b"\x00" * 10
    path.write_bytes(data[:at] + garbage + data[at + len(garbage):])
    return path


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit black PNG of any size, written without holding the pixels in memory."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path
