"""Helpers the benchmark scripts share: test images, checkpoints, timing, tables.

Benchmarks print ratios measured side by side in one process run: every
contender runs once per round, rounds are interleaved, and a ratio is taken
within each round (so a burst of load from another process hits both sides of
a ratio alike). The table shows the median over rounds and the range.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Before torch: visiontk sets what the CLI process runs with (OpenMP wait policy).
import visiontk  # noqa: E402, F401

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

# Where generated images and checkpoints are cached between benchmark runs.
CACHE = Path(os.environ.get("VISIONTK_BENCH_CACHE", REPO / "benchmarks" / ".cache"))


def photo_like(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """An RGB image with smooth gradients, blobs and noise: JPEG-compresses like a
    photo (about 1-2 bits per pixel at quality 90), unlike flat colours or pure noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    for c in range(3):
        a, b, p = rng.uniform(0.002, 0.02, 3)
        img[..., c] = 128 + 60 * np.sin(xx * a + p * 10) * np.cos(yy * b)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.05, 0.3) * min(width, height)
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        img[mask] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 8, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_jpegs(folder: Path, n: int, size: tuple[int, int] = (640, 480), seed: int = 0, distinct: int = 16,
               quality: int = 90) -> list[Path]:
    """`n` JPEGs of `size` (w, h) in `folder`, reused when already there.

    `distinct` different images are generated and written under n names (the
    decoding cost is the same; generating thousands of photos would dominate).
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"img_{i:06d}.jpg" for i in range(n)]
    if all(p.exists() for p in paths):
        return paths
    rng = np.random.default_rng(seed)
    encoded = []
    for _ in range(min(distinct, n)):
        im = Image.fromarray(photo_like(rng, *size))
        tmp = folder / ".tmp.jpg"
        im.save(tmp, quality=quality)
        encoded.append(tmp.read_bytes())
        tmp.unlink()
    for i, p in enumerate(paths):
        if not p.exists():
            p.write_bytes(encoded[i % len(encoded)])
    return paths


def make_checkpoint(recipe_name: str, path: Path, overrides: list[str] | None = None, classes: list[str] | None = None,
                    seed: int = 0) -> Path:
    """A checkpoint of the recipe's model with random weights (speed does not
    depend on the weights), without touching the recipe's data."""
    from visiontk.engine.build import build_model, checkpoint_meta, state_dict_fp32
    from visiontk.engine.checkpoint import FORMAT, VERSION, atomic_save
    from visiontk.tasks.recipes import load_recipe

    if path.exists():
        return path
    recipe = load_recipe(recipe_name, overrides or [])
    classes = classes or ["circle", "square", "triangle"]
    torch.manual_seed(seed)
    model = build_model(recipe, len(classes), load_weights=False, classes=classes)
    ckpt = {"format": FORMAT, "version": VERSION, **checkpoint_meta(recipe, classes), "model": state_dict_fp32(model),
            "epoch": 0}
    atomic_save(ckpt, path)
    return path


def timed(fn: Callable[[], int | tuple[int, float]]) -> float:
    """Run `fn`; images per second. `fn` returns the number of images it handled,
    or (images, seconds) when it times itself (e.g. excluding a start-up)."""
    start = time.perf_counter()
    n = fn()
    if isinstance(n, tuple):
        return n[0] / n[1]
    return n / max(time.perf_counter() - start, 1e-9)


def interleaved(contenders: dict[str, Callable[[], int]], rounds: int, warmup: bool = True) -> dict[str, list[float]]:
    """Rates (images/s) per contender, one run of each per round, rounds interleaved."""
    if warmup:
        for fn in contenders.values():
            fn()
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            rates[name].append(timed(fn))
    return rates


def ratio_stats(num: list[float], den: list[float]) -> tuple[float, float, float]:
    """Median, min and max of the per-round ratios num/den."""
    r = [a / b for a, b in zip(num, den)]
    return statistics.median(r), min(r), max(r)


def fmt_ratio(stats: tuple[float, float, float], target: float | None = None) -> str:
    med, lo, hi = stats
    text = f"{med:.2f}x ({lo:.2f}-{hi:.2f})"
    if target is not None:
        text += " ✓" if med >= target else f" ✗ (target {target:g}x)"
    return text


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def environment() -> str:
    """One line saying where the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
            f"{os.cpu_count()} cores ({cpu}, "
            f"{torch.backends.cpu.get_cpu_capability()}), {gpu}; load average at start {load_average()}")
