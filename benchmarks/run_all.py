"""`make bench`: run every benchmark and write their tables to benchmarks/results/.

Each script runs in its own process (one model and its threads at a time) and
prints a markdown section; the sections go, in order, into
benchmarks/results/bench-<date>-<time>.md and benchmarks/results/latest.md.
Task benchmarks other people add (detect_bench.py, segment_bench.py) run too
when they exist.

    python benchmarks/run_all.py [--quick] [--only predict,train]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_utils as bu  # noqa: E402

# name -> (script, arguments, quick arguments)
BENCHES = {
    "predict": ("predict_bench.py", ["--models", "demo,detect-demo,segment-demo,resnet18", "--precisions", "fp32,bf16",
                                     "--cli", "--rounds", "5"],
                ["--models", "demo", "--precisions", "fp32", "--rounds", "1", "--n", "64"]),
    "schedules": ("predict_bench.py", ["--models", "demo,detect-demo,resnet18", "--precisions", "fp32",
                                       "--schedules", "auto,alternate,pipeline,processes", "--profile"],
                  ["--models", "demo", "--precisions", "fp32", "--rounds", "1", "--n", "64",
                   "--schedules", "auto,alternate,pipeline", "--profile"]),
    "train": ("train_bench.py", ["--models", "demo,resnet18", "--modes", "fp32,fp32-cl,bf16-cl", "--rounds", "5"],
              ["--models", "demo", "--modes", "fp32", "--rounds", "1"]),
    "data": ("data_bench.py", [], ["--rounds", "1", "--sizes", "640x480:224"]),
    "precision": ("precision_bench.py", [], []),
    "backends": ("backend_bench.py", ["--models", "demo,detect-demo,segment-demo,resnet18", "--rounds", "5"],
                 ["--models", "demo", "--rounds", "1"]),
    "memory": ("memory_bench.py", [], ["--counts", "200,400"]),
    # bf16 against fp32 on each kind of CPU this one can stand in for (AMX, AVX-512 BF16, AVX2).
    "cpu-kinds": ("cpu_kinds.py", ["--rounds", "3"], ["--models", "demo", "--rounds", "1"]),
    "detect": ("detect_bench.py", [], None),  # None: no quick form, skipped by --quick
    "segment": ("segment_bench.py", [], None),
    # visiontk against Ultralytics, a plain loop and smp; without the peers installed
    # (here or in .venv-peers: `make bench-peers`) it prints one line saying how to get them.
    "peers": ("peers_bench.py", [], ["--quick", "--tasks", "classify"]),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny runs: check that every script works, not numbers")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(HERE.parent)}
    sections = [f"# visiontk benchmarks, {time.strftime('%Y-%m-%d %H:%M')}\n", bu.environment(), ""]
    failed = []
    for name in names:
        script, full, quick = BENCHES[name]
        if not (HERE / script).exists() or (args.quick and quick is None):
            continue
        cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        print(f"== {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=HERE.parent)
        took = time.perf_counter() - start
        if proc.returncode != 0:
            failed.append(name)
            sections.append(f"## {name}\n\nfailed (exit {proc.returncode}) after {took:.0f} s\n")
            continue
        sections.append(f"## {name}\n\n{proc.stdout.strip()}\n\n({took:.0f} s)\n")
    text = "\n".join(sections)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"bench-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}.md"
    out.write_text(text)
    (results / ("latest-quick.md" if args.quick else "latest.md")).write_text(text)
    print(text)
    print(f"\nwrote {out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
