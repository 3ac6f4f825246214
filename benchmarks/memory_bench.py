"""Memory over a long prediction run: peak RSS of `visiontk classify predict` at 2,000 and 20,000 images.

The paths are streamed (a list on stdin, and a folder) and every record is
written as it comes, so the peak resident memory must not grow with the number
of images. Small JPEGs (96x72) are generated into a temporary folder and
removed at the end. Each run is a fresh process; its peak RSS comes from
wait4's resource usage.

    python benchmarks/memory_bench.py [--counts 2000,20000]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_utils as bu  # noqa: E402


def run_predict(ckpt: Path, source: str, stdin_file: Path | None, out: Path) -> tuple[float, float, int]:
    """(peak RSS MB, seconds, records written) of one predict process."""
    cmd = [sys.executable, "-m", "visiontk", "classify", "predict", str(ckpt), source, "--device", "cpu", "--out", str(out)]
    stdin = open(stdin_file) if stdin_file else subprocess.DEVNULL
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if stdin_file:
            stdin.close()
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"predict failed ({proc.returncode}): {stderr.decode()[-500:]}")
    with open(out) as f:
        records = sum(1 for _ in f)
    out.unlink()
    return usage.ru_maxrss / 1024, seconds, records


def baseline_rss() -> float:
    """Peak RSS (MB) of a process that only imports torch and torchvision: the
    floor under any predict run (mostly the shared libraries of torch's build)."""
    proc = subprocess.Popen([sys.executable, "-c", "import torch, torchvision"], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("python -c 'import torch, torchvision' failed")
    return usage.ru_maxrss / 1024


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="2000,20000")
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    ckpt = bu.make_checkpoint("classify/shapes", bu.CACHE / "ckpt-demo.pt")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vtk-mem-bench-") as tmp:
        tmp = Path(tmp)
        paths = bu.make_jpegs(tmp / "images", max(counts), size=(96, 72), quality=85)
        for n in counts:
            lst = tmp / f"list-{n}.txt"
            lst.write_text("".join(f"{p}\n" for p in paths[:n]))
            folder = tmp / f"folder-{n}"
            folder.mkdir()
            for p in paths[:n]:
                os.link(p, folder / p.name)
            for how, source, stdin in (("stdin list", "-", lst), ("folder", str(folder), None)):
                rss, seconds, records = run_predict(ckpt, source, stdin, tmp / "out.jsonl")
                rows.append([how, f"{n:,}", f"{records:,}", f"{rss:.0f}", f"{n / seconds:.0f}"])
                print(f"  {how} {n}: {rss:.0f} MB, {seconds:.1f} s", file=sys.stderr)
    floor = baseline_rss()
    rows.append(["(baseline: `python -c 'import torch, torchvision'`)", "0", "-", f"{floor:.0f}", "-"])
    by = {(r[0], r[1]): float(r[3]) for r in rows}
    growth = [f"{how}: {by[(how, f'{counts[-1]:,}')] - by[(how, f'{counts[0]:,}')]:+.0f} MB"
              for how in ("stdin list", "folder")]
    text = "\n".join([
        "### Memory: peak RSS of `visiontk classify predict` (demo model, 96x72 JPEGs, --out FILE)\n",
        bu.environment(), "",
        bu.markdown_table(["paths from", "images", "records written", "peak RSS MB", "img/s (incl. start-up)"], rows),
        f"\ngrowth from {counts[0]:,} to {counts[-1]:,} images: " + ", ".join(growth)
        + f"; predict's own share above the import baseline at {counts[-1]:,}: "
        + ", ".join(f"{how} {by[(how, f'{counts[-1]:,}')] - floor:+.0f} MB" for how in ("stdin list", "folder")),
    ])
    print(text)
    return text


if __name__ == "__main__":
    main()
