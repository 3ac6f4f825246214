"""Memory over a long prediction run: peak RSS of `visiontk classify predict` at 2,000 and 20,000 images.

The paths are streamed (a list on stdin, and a folder) and every record is
written as it comes, so the peak resident memory must not grow with the number
of images. Small JPEGs (96x72) are generated into a temporary folder and
removed at the end. Each run is a fresh process; its peak RSS comes from
wait4's resource usage.

Two references (issue 18: predict's peak within the plain loop's + 100 MB, its
start-up beyond `import torch` under 0.5 s):
- plain loop: what a user would write around the same model on the same
  images, batched: the model traced to TorchScript (so the loop imports torch,
  PIL and numpy, nothing of visiontk), PIL decode + resize, a batch of 32,
  softmax, one JSON line per image;
- start-up: wall and CPU seconds of `visiontk classify predict` on one 640x480
  JPEG against `python -c "import torch"`, interleaved, medians (the CPU seconds
  of the process and its threads move less than the wall time on a shared
  machine); with visiontk's bytecode cached (an installed package) and without
  (PYTHONDONTWRITEBYTECODE=1, as in an editable install run that way).

    python benchmarks/memory_bench.py [--counts 2000,20000] [--startup-rounds 5] [--startup-only]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
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


PLAIN_LOOP = """
import json, sys
import numpy as np
import torch
from PIL import Image

model_file, list_file, out_file, spec = sys.argv[1:5]
spec = json.loads(spec)
model = torch.jit.load(model_file).eval()
h, w = spec["size"]
mean = torch.tensor(spec["mean"]).view(1, -1, 1, 1)
std = torch.tensor(spec["std"]).view(1, -1, 1, 1)
with open(list_file) as paths, open(out_file, "w") as out, torch.inference_mode():
    def flush(images, names):
        x = (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255 - mean) / std
        prob, index = model(x).softmax(1).max(1)
        for name, p, i in zip(names, prob.tolist(), index.tolist()):
            out.write(json.dumps({"path": name, "label": spec["classes"][i], "prob": round(p, 5)}) + "\\n")

    images, names = [], []
    for line in paths:
        path = line.strip()
        images.append(np.asarray(Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR)))
        names.append(path)
        if len(images) == 32:
            flush(images, names)
            images, names = [], []
    if images:
        flush(images, names)
"""


def traced_model(ckpt: Path, out: Path) -> dict:
    """The checkpoint's model as TorchScript (for the plain loop), and what the loop needs to feed it."""
    import torch

    from visiontk.engine.build import model_from_checkpoint
    from visiontk.data.preprocess import Preprocess

    model, meta = model_from_checkpoint(ckpt, "classify")
    pre = Preprocess.from_checkpoint(meta)
    with torch.inference_mode():
        traced = torch.jit.trace(model.eval(), torch.zeros(1, 3, *pre.size))
    traced.save(str(out))
    return {"size": list(pre.size), "mean": list(pre.mean), "std": list(pre.std), "classes": list(meta["classes"])}


def run_plain_loop(model_file: Path, spec: dict, stdin_file: Path, out: Path) -> tuple[float, float, int]:
    """(peak RSS MB, seconds, records written) of the plain loop over the listed images."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", PLAIN_LOOP, str(model_file), str(stdin_file), str(out),
                             json.dumps(spec)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"plain loop failed: {stderr.decode()[-500:]}")
    with open(out) as f:
        records = sum(1 for _ in f)
    out.unlink()
    return usage.ru_maxrss / 1024, seconds, records


# How the start-up is run. A pip-installed visiontk has its modules' bytecode cached
# (pip compiles them at install; Python writes __pycache__ on first import), as
# torch's and every other site-package's is; a session with
# PYTHONDONTWRITEBYTECODE=1 and an editable install (this repository's `make`)
# compiles visiontk's own modules from source in every process (~0.2 s for the
# ~100 that predict imports). Both are measured: the first is what a user waits.
BYTECODE_MODES = {
    "bytecode cached": "PYTHONPYCACHEPREFIX",
    "PYTHONDONTWRITEBYTECODE=1": "PYTHONDONTWRITEBYTECODE",
}


def _startup_env(mode: str, prefix: Path) -> dict:
    env = dict(os.environ)
    if BYTECODE_MODES[mode] == "PYTHONPYCACHEPREFIX":
        # Every module's bytecode (torch's too, for a fair baseline) under one
        # folder of the bench cache, written by a first unmeasured run.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(prefix)
    else:
        env.pop("PYTHONPYCACHEPREFIX", None)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def startup(ckpt: Path, image: Path, rounds: int, modes: list[str] | None = None) -> list[list]:
    """Rows: wall and CPU seconds of `import torch` and of predict on one image, and
    the difference, in each bytecode mode; every command once per round, rounds interleaved."""
    modes = modes or list(BYTECODE_MODES)
    commands = {"python -c 'import torch'": [sys.executable, "-c", "import torch"],
                "visiontk classify predict (1 image)": [sys.executable, "-m", "visiontk", "classify", "predict",
                                                        str(ckpt), str(image), "--device", "cpu"]}
    runs = {(mode, name): (cmd, _startup_env(mode, bu.CACHE / "pycache")) for mode in modes
            for name, cmd in commands.items()}

    def once(cmd, env) -> tuple[float, float]:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {stderr.decode()[-500:]}")
        return time.perf_counter() - start, usage.ru_utime + usage.ru_stime

    for cmd, env in runs.values():
        once(cmd, env)  # unmeasured: writes the cached bytecode, warms the page cache
    times: dict[tuple, list[tuple[float, float]]] = {k: [] for k in runs}
    for _ in range(rounds):
        for key, (cmd, env) in runs.items():
            times[key].append(once(cmd, env))
    med = statistics.median
    rows = []
    for mode in modes:
        (_, base), (_, ours) = [(k, v) for k, v in times.items() if k[0] == mode]
        for (m, name), v in times.items():
            if m == mode:
                rows.append([f"{name} ({mode})", f"{med(t[0] for t in v):.2f}", f"{med(t[1] for t in v):.2f}"])
        rows.append([f"**predict beyond import torch ({mode})** (median of per-round differences)",
                     f"{med(a[0] - b[0] for a, b in zip(ours, base)):+.2f}",
                     f"{med(a[1] - b[1] for a, b in zip(ours, base)):+.2f}"])
    return rows


def startup_table(ckpt: Path, rounds: int) -> str:
    """The start-up table: one 640x480 JPEG (a photo's size)."""
    image = bu.make_jpegs(bu.CACHE / "startup-640x480", 1)[0]
    before = bu.load_average()
    rows = startup(ckpt, image, rounds)
    return (f"### Start-up: seconds, median of {rounds} interleaved rounds, one 640x480 JPEG "
            f"(target: under 0.5 s beyond import torch)\n\n"
            + bu.markdown_table(["process", "wall s", "CPU s"], rows)
            + f"\n\nload average before / after: {before} / {bu.load_average()}")


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
    ap.add_argument("--startup-rounds", type=int, default=5)
    ap.add_argument("--startup-only", action="store_true", help="Only the start-up table (no memory runs).")
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    ckpt = bu.make_checkpoint("classify/shapes", bu.CACHE / "ckpt-demo.pt")
    if args.startup_only:
        text = "\n".join([bu.environment(), "", startup_table(ckpt, args.startup_rounds)])
        print(text)
        return text
    rows = []
    with tempfile.TemporaryDirectory(prefix="vtk-mem-bench-") as tmp:
        tmp = Path(tmp)
        paths = bu.make_jpegs(tmp / "images", max(counts), size=(96, 72), quality=85)
        traced = tmp / "model.ts"
        spec = traced_model(ckpt, traced)
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
        n = counts[-1]
        rss, seconds, records = run_plain_loop(traced, spec, tmp / f"list-{n}.txt", tmp / "plain.jsonl")
        plain = ["(plain loop: TorchScript model, PIL, batch 32, list of paths)", f"{n:,}", f"{records:,}",
                 f"{rss:.0f}", f"{n / seconds:.0f}"]
        print(f"  plain loop {n}: {rss:.0f} MB, {seconds:.1f} s", file=sys.stderr)
    floor = baseline_rss()
    rows.append(plain)
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
        + ", ".join(f"{how} {by[(how, f'{counts[-1]:,}')] - floor:+.0f} MB" for how in ("stdin list", "folder"))
        + f"; above the plain loop: "
        + ", ".join(f"{how} {by[(how, f'{counts[-1]:,}')] - float(plain[3]):+.0f} MB" for how in ("stdin list", "folder"))
        + " (target: +100 MB at most)",
        "",
        startup_table(ckpt, args.startup_rounds),
    ])
    print(text)
    return text


if __name__ == "__main__":
    main()
