"""visiontk against the tools a user would pick instead, end to end on one folder of JPEGs.

Every contender is a separate process, run the way its users run it, on the
same generated 640x480 JPEGs, with 2 threads (OMP_NUM_THREADS) and the same
batch size:

classify (the same ResNet-18 at 224, random weights saved once per tool):
- visiontk: `visiontk classify predict` with each --backend asked for (a backend
  the installed visiontk lacks is skipped, and said so);
- Ultralytics: `yolo classify predict` (its entry point, with torch's thread
  count set to 2: on the CPU Ultralytics sets it to cores - 1 whatever
  OMP_NUM_THREADS says; "ultralytics default" keeps that), the model built offline from an
  Ultralytics yaml: their `TorchVision` module holding torchvision's resnet18
  (weights None) and their `Classify` head; it differs from visiontk's head
  (avg pool + linear) by a 1x1 conv 512->1280 + BN + SiLU before the pool;
- plain: a batched PyTorch loop: PIL decode, torchvision transforms, batch B,
  inference_mode, softmax top-5 as JSON lines (torchvision's resnet18).

segment (U-Net on a ResNet-18 encoder at 256x256, masks written as PNGs at
the image's size):
- visiontk: `visiontk segment predict` (resnet18 backbone, unet decoder with
  decoder_channels [256, 128, 64, 32], transposed-conv upsampling; logits at
  stride 2, upsampled bilinearly);
- smp: a plain loop over segmentation_models_pytorch's Unet("resnet18")
  (decoder (256, 128, 64, 32, 16): nearest upsampling and a 5th stage at full
  resolution), bilinear upsampling of the logits to the image's size, argmax,
  PNG.

detect is not compared: visiontk's detector is a YOLO-v1 head (one S x S grid
of boxes on a backbone's last feature map, fully connected or conv layers),
and Ultralytics builds no v1: its detect heads (v3 to v11 and later) are
multi-scale necks with anchor or DFL box heads. A ratio would measure the two
architectures and their post-processing, not the tools.

Each round runs every contender (A B C, A B C, ...) twice: on B images (one
batch) and on N images. From those: wall time per image including start-up
(t_N / N), steady throughput ((N - B) / (t_N - t_B)), start-up (t_B minus B
images at the steady rate) and the peak RSS of the process (wait4). Ratios are
taken within a round; the table shows their median and range.

The peers live in their own virtualenv (`make bench-peers` creates .venv-peers):
Ultralytics needs opencv-python, which shares the cv2 module with visiontk's
opencv-python-headless. visiontk and the plain loop run in this Python.
Ultralytics runs with YOLO_OFFLINE=1, YOLO_AUTOINSTALL=false and settings
sync=false in its own config folder: it never reaches the network.

    python benchmarks/peers_bench.py [--backends torch,onnxruntime,openvino] [--rounds 5] [--quick]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS_VENV = REPO / ".venv-peers"
HOW_TO_GET = ("peers: skipped (ultralytics and segmentation-models-pytorch are not installed here); "
              "`make bench-peers` creates .venv-peers (about 6 GB, 3 minutes) and runs benchmarks/peers_bench.py")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni")
THREADS = 2
CLASSIFY_SIZE, SEGMENT_SIZE = 224, 256
CLASSES = ["circle", "square", "triangle"]


# -- tables (pure functions: tested without torch) ------------------------------------------------------------------
def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """Median and range of a list: '1.23 (1.10-1.40)'; one value alone."""
    values = [v for v in values if v == v]  # NaN: a round whose two runs could not be told apart
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def round_metrics(t_small: float, t_big: float, small: int, big: int) -> dict:
    """One round of one contender: wall per image (ms, start-up included), steady
    images/s from the difference of the two runs, and the start-up it implies."""
    if t_big <= t_small or big <= small:  # load from other processes swamped the difference
        return {"wall_ms": 1000 * t_big / big, "steady": float("nan"), "startup": float("nan")}
    steady = (big - small) / (t_big - t_small)
    return {"wall_ms": 1000 * t_big / big, "steady": steady, "startup": max(t_small - small / steady, 0.0)}


def contender_table(results: dict[str, dict]) -> str:
    """Per contender: wall ms per image incl. start-up, steady images/s, start-up s, peak RSS MB."""
    rows = ["| contender | what runs | wall ms/img incl. start-up | steady img/s | start-up s | peak RSS MB |",
            "|---|---|---|---|---|---|"]
    for name, r in results.items():
        rounds = r["rounds"]
        rows.append(f"| {name} | {r['what']} | {spread([x['wall_ms'] for x in rounds], '{:.1f}')} | "
                    f"{spread([x['steady'] for x in rounds], '{:.1f}')} | {spread([x['startup'] for x in rounds])} | "
                    f"{max(r['rss_mb']):.0f} |")
    return "\n".join(rows)


def ratio_table(results: dict[str, dict], pairs: list[tuple[str, str]]) -> str:
    """visiontk over a peer, per round: end to end (the peer's wall / visiontk's
    wall) and steady (visiontk's images/s / the peer's). > 1: visiontk is faster."""
    rows = ["| visiontk | vs | end to end (incl. start-up) | steady | peak RSS difference MB |", "|---|---|---|---|---|"]
    best = best_backend(results, [o for o, _ in pairs])
    for ours, theirs in pairs:
        a, b = results[ours]["rounds"], results[theirs]["rounds"]
        wall = [y["wall_ms"] / x["wall_ms"] for x, y in zip(a, b)]
        steady = [x["steady"] / y["steady"] for x, y in zip(a, b)]
        rss = max(results[ours]["rss_mb"]) - max(results[theirs]["rss_mb"])
        label = f"**{ours}** (best)" if ours == best and len({o for o, _ in pairs}) > 1 else ours
        wall_s, steady_s = spread(wall), spread(steady)
        rows.append(f"| {label} | {theirs} | {wall_s}{'x' * (wall_s != '-')} | {steady_s}{'x' * (steady_s != '-')} "
                    f"| {rss:+.0f} |")
    return "\n".join(rows)


def best_backend(results: dict[str, dict], names: list[str]) -> str | None:
    """The visiontk contender with the highest median steady throughput."""
    names = [n for n in names if n in results]
    if not names:
        return None
    def steady(n: str) -> float:
        rates = [x["steady"] for x in results[n]["rounds"] if x["steady"] == x["steady"]]
        return statistics.median(rates) if rates else 0.0

    return max(names, key=steady)


# -- children: the plain loops, and the peers' model files ----------------------------------------------------------
def child_plain_classify(weights: str, folder: str, batch: int, size: int) -> None:
    """A competent batched plain PyTorch loop: what a user writes with torchvision."""
    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms as T

    model = torchvision.models.resnet18(num_classes=len(CLASSES))
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    paths = sorted(str(p) for p in Path(folder).iterdir() if p.suffix == ".jpg")
    out = sys.stdout
    with torch.inference_mode():
        for i in range(0, len(paths), batch):
            chunk = paths[i:i + batch]
            x = torch.stack([tf(Image.open(p).convert("RGB")) for p in chunk])
            probs, idx = model(x).softmax(1).topk(min(5, len(CLASSES)), dim=1)
            for p, pr, ix in zip(chunk, probs.tolist(), idx.tolist()):
                out.write(json.dumps({"path": p, "top": [{"class": CLASSES[j], "p": q} for j, q in zip(ix, pr)]}) + "\n")


def child_smp_segment(weights: str, folder: str, batch: int, size: int, out_dir: str) -> None:
    """A plain loop over smp's U-Net: logits upsampled to the image's size, argmax, PNG."""
    import numpy as np
    import segmentation_models_pytorch as smp
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torchvision import transforms as T

    model = smp.Unet("resnet18", encoder_weights=None, classes=len(CLASSES))
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    paths = sorted(Path(folder).glob("*.jpg"))
    os.makedirs(out_dir, exist_ok=True)
    with torch.inference_mode():
        for i in range(0, len(paths), batch):
            chunk = paths[i:i + batch]
            images = [Image.open(p).convert("RGB") for p in chunk]
            logits = model(torch.stack([tf(im) for im in images]))
            for p, im, lg in zip(chunk, images, logits):
                up = F.interpolate(lg[None], size=(im.height, im.width), mode="bilinear", align_corners=False)[0]
                Image.fromarray(up.argmax(0).to(torch.uint8).numpy().astype(np.uint8)).save(
                    Path(out_dir) / f"{p.stem}.png", compress_level=3)


ULTRALYTICS_YAML = f"""# ResNet-18 classifier from Ultralytics' own modules (their yolo11-cls-resnet18.yaml, offline: weights null)
nc: {len(CLASSES)}
backbone:
  - [-1, 1, TorchVision, [512, resnet18, null, True, 2]]  # torchvision resnet18 without avgpool and fc
head:
  - [-1, 1, Classify, [nc]]
"""


def child_yolo(threads: int, argv: list[str]) -> int:
    """`yolo ...` with `threads` torch threads. Ultralytics sets torch's thread count to
    min(8, cores - 1) on the CPU whatever OMP_NUM_THREADS says (1 on 2 cores); 0 keeps that."""
    sys.argv = ["yolo", *argv]  # before the import: Ultralytics reads its arguments then
    from ultralytics.cfg import entrypoint
    from ultralytics.utils import torch_utils

    if threads:
        torch_utils.NUM_THREADS = threads
    return entrypoint() or 0


def child_prepare_peers(cache: str) -> None:
    """In the peers' Python: Ultralytics' classifier built from yaml and saved as their
    checkpoint, smp's U-Net weights, and Ultralytics settings with sync off."""
    import torch

    cache_dir = Path(cache)
    from ultralytics import YOLO, settings

    settings.update({"sync": False})
    yaml_path = cache_dir / "ultralytics-resnet18-cls.yaml"
    yaml_path.write_text(ULTRALYTICS_YAML)
    torch.manual_seed(0)
    YOLO(str(yaml_path), task="classify").save(str(cache_dir / "ultralytics-resnet18-cls.pt"))

    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, classes=len(CLASSES))
    torch.save(model.state_dict(), cache_dir / "smp-unet-resnet18.pt")
    import ultralytics

    print(json.dumps({"ultralytics": ultralytics.__version__, "smp": smp.__version__, "torch": torch.__version__}))


# -- the parent ----------------------------------------------------------------------------------------------------
def has_peers(python: str) -> bool:
    if python == sys.executable:
        return all(importlib.util.find_spec(m) for m in ("ultralytics", "segmentation_models_pytorch"))
    probe = "import importlib.util as u,sys; sys.exit(0 if u.find_spec('ultralytics') and u.find_spec('segmentation_models_pytorch') else 1)"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def find_peers_python(given: str | None) -> str | None:
    if given:
        # Absolute (children run in a temporary folder), but not resolved: a venv's
        # python is a symlink to the base interpreter, which lacks the venv's packages.
        given = os.path.abspath(given)
        return given if has_peers(given) else None
    if has_peers(sys.executable):
        return sys.executable
    candidate = PEERS_VENV / "bin" / "python"
    return str(candidate) if candidate.exists() and has_peers(str(candidate)) else None


def cpu_header() -> str:
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    have = [f for f in CPU_FLAGS if f in flags] or ["none of " + ", ".join(CPU_FLAGS)]
    return f"{os.cpu_count()} cores, {model}; flags: {' '.join(have)}"


def run_process(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float, int, str]:
    """Wall seconds, peak RSS (MB) of the process, exit code and the end of stderr."""
    err_path = cwd / f".stderr-{time.monotonic_ns()}"
    with open(err_path, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    tail = err_path.read_text(errors="replace").strip().splitlines()[-3:]
    err_path.unlink()
    return took, usage.ru_maxrss / 1024, proc.returncode, " / ".join(tail)


class Contender:
    def __init__(self, name: str, what: str, make_cmd, env: dict):
        self.name, self.what, self.make_cmd, self.env = name, what, make_cmd, env


def visiontk_backends(task: str, ckpt: Path, requested: list[str], base_env: dict, probe_image: Path, tmp: Path,
                      notes: list[str]) -> list[tuple[str, list[str]]]:
    """(backend, extra arguments) for each requested backend the installed visiontk runs;
    the others are noted and skipped. Tried on one image (which also warms caches)."""
    help_text = subprocess.run([sys.executable, "-m", "visiontk", task, "predict", "--help"], capture_output=True,
                               text=True, env={**base_env, "COLUMNS": "200"}).stdout
    has_option = "--backend" in help_text
    found = []
    for backend in requested:
        if not has_option:
            if backend == "torch":
                found.append(("torch", []))
            else:
                notes.append(f"visiontk {task} predict has no --backend option: backend {backend} skipped")
            continue
        extra = ["--backend", backend]
        cmd = [sys.executable, "-m", "visiontk", task, "predict", str(ckpt), str(probe_image), "--device", "cpu", *extra]
        if task == "segment":
            cmd += ["--out-dir", str(tmp / f"probe-{backend}-{time.monotonic_ns()}")]
        _, _, rc, tail = run_process(cmd, base_env, tmp)
        if rc == 0:
            found.append((backend, extra))
        else:
            notes.append(f"visiontk {task} predict --backend {backend}: skipped (exit {rc}: {tail[-200:]})")
    return found


def measure(contenders: list[Contender], folders: tuple[Path, Path], counts: tuple[int, int], rounds: int, tmp: Path,
            progress) -> dict[str, dict]:
    results = {c.name: {"what": c.what, "rounds": [], "rss_mb": []} for c in contenders}
    failed: dict[str, str] = {}
    # Warm-up: file cache, .pyc files, the peers' first-run set-up.
    for c in contenders:
        _, _, rc, tail = run_process(c.make_cmd(folders[0], tmp), c.env, tmp)
        if rc != 0:
            failed[c.name] = f"exit {rc}: {tail[-300:]}"
    for r in range(rounds):
        for c in contenders:
            if c.name in failed:
                continue
            progress(f"round {r + 1}/{rounds}: {c.name}")
            t_small, _, rc1, tail1 = run_process(c.make_cmd(folders[0], tmp), c.env, tmp)
            t_big, rss, rc2, tail2 = run_process(c.make_cmd(folders[1], tmp), c.env, tmp)
            if rc1 or rc2:
                failed[c.name] = f"exit {rc1 or rc2}: {(tail1 or tail2)[-300:]}"
                continue
            results[c.name]["rounds"].append(round_metrics(t_small, t_big, *counts))
            results[c.name]["rss_mb"].append(rss)
    for name, why in failed.items():
        results.pop(name)
        results[name + " (failed)"] = {"failed": why}
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="torch,onnxruntime,openvino",
                    help="visiontk --backend values to try, comma-separated (one the installed visiontk lacks is skipped)")
    ap.add_argument("--tasks", default="classify,segment", help="classify, segment or both")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=256, help="images in the large run (the small run is one batch)")
    ap.add_argument("--segment-n", type=int, default=128, help="images in segment's large run")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--precision", default="fp32", help="visiontk --precision (the peers run fp32 on the CPU)")
    ap.add_argument("--no-ultralytics-default", dest="ultralytics_default", action="store_false",
                    help="leave out Ultralytics at its own thread count (cores - 1 torch threads on the CPU)")
    ap.add_argument("--peers-python", default=None,
                    help="a Python with ultralytics and segmentation-models-pytorch (default: this one, else .venv-peers)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 round, few images")
    ap.add_argument("--print-requirements", action="store_true",
                    help="print the packages .venv-peers needs (pyproject's torch pins and its peers extra) and exit")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "plain-classify":
            child_plain_classify(rest[0], rest[1], int(rest[2]), int(rest[3]))
        elif kind == "smp-segment":
            child_smp_segment(rest[0], rest[1], int(rest[2]), int(rest[3]), rest[4])
        elif kind == "yolo":
            return child_yolo(int(rest[0]), rest[1:])
        elif kind == "prepare-peers":
            child_prepare_peers(rest[0])
        return 0
    if args.print_requirements:
        print(" ".join(peer_requirements()))
        return 0

    peers_python = find_peers_python(args.peers_python)
    if peers_python is None and args.peers_python:
        print(f"peers: {args.peers_python} cannot import ultralytics and segmentation_models_pytorch", file=sys.stderr)
        return 2
    if peers_python is None:
        print(HOW_TO_GET)
        return 0
    if args.quick:
        args.rounds, args.n, args.segment_n, args.batch = 1, 32, 16, 8
    return run(args, peers_python)


def peer_requirements() -> list[str]:
    """pyproject.toml's torch and torchvision pins and its `peers` extra: one source for both venvs."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if d.split("=")[0].split(">")[0] in ("torch", "torchvision")]
    return pins + project["optional-dependencies"]["peers"]


def run(args, peers_python: str) -> int:
    sys.path.insert(0, str(HERE))
    import bench_utils as bu
    import torch
    import torchvision

    def progress(text: str) -> None:
        print(f"peers: {text}", file=sys.stderr, flush=True)

    load_before = bu.load_average()
    started = time.strftime("%Y-%m-%d %H:%M")
    cache = bu.CACHE / "peers"
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    threads = {"OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}
    base_env = {**os.environ, **threads, "NO_ALBUMENTATIONS_UPDATE": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    ycfg = cache / "ultralytics-config"
    peers_env = {**os.environ, **threads, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false",
                 "YOLO_CONFIG_DIR": str(ycfg), "YOLO_VERBOSE": "false", "PYTHONPATH": ""}
    progress(f"preparing models (peers' Python: {peers_python})")
    prep = subprocess.run([peers_python, __file__, "--child", "prepare-peers", str(cache)], capture_output=True,
                          text=True, env=peers_env)
    if prep.returncode != 0:
        print(f"peers: preparing the peers' models failed: {prep.stderr.strip().splitlines()[-1:]}")
        return 1
    versions = json.loads(prep.stdout.strip().splitlines()[-1])

    # Folders: a small one (one batch) and a large one, symlinks to the same cached JPEGs.
    n_max = max(args.n, args.segment_n)
    jpegs = bu.make_jpegs(bu.CACHE / "jpeg-640x480", n_max, size=(640, 480))

    def folder(count: int) -> Path:
        path = cache / f"images-{count}"
        if not path.exists():
            path.mkdir()
            for p in jpegs[:count]:
                (path / p.name).symlink_to(p.resolve())
        return path

    requested = [b for b in args.backends.split(",") if b]
    tasks = [t for t in args.tasks.split(",") if t]
    notes: list[str] = []
    sections = []
    me = str(Path(__file__).resolve())
    seq = iter(range(10 ** 9))

    def vtk_cmd(task, ckpt, extra):
        def make(folder_path, tmp_dir):
            cmd = [sys.executable, "-m", "visiontk", task, "predict", str(ckpt), str(folder_path), "--device", "cpu",
                   "--batch-size", str(args.batch), "--workers", str(THREADS), "--precision", args.precision, *extra]
            if task == "segment":
                cmd += ["--out-dir", str(tmp_dir / f"vtk-masks-{next(seq)}")]
            return cmd
        return make

    if "classify" in tasks:
        ckpt = bu.make_checkpoint("classify/shapes", cache / "visiontk-resnet18-cls.pt",
                                  ["model.backbone=resnet18", "model.backbone_options={}",
                                   f"data.image_size={CLASSIFY_SIZE}", "model.head.pool=avg"], classes=CLASSES)
        plain_weights = cache / "plain-resnet18.pt"
        if not plain_weights.exists():
            torch.manual_seed(0)
            torch.save(torchvision.models.resnet18(num_classes=len(CLASSES)).state_dict(), plain_weights)
        backends = visiontk_backends("classify", ckpt, requested, base_env, jpegs[0], tmp, notes)
        contenders = [Contender(f"visiontk {b}", f"`visiontk classify predict{' --backend ' + b if extra else ''}`",
                                vtk_cmd("classify", ckpt, extra), base_env) for b, extra in backends]
        u_pt = cache / "ultralytics-resnet18-cls.pt"

        def yolo_cmd(threads: int):
            return lambda f, t: [peers_python, me, "--child", "yolo", str(threads), "classify", "predict",
                                 f"model={u_pt}", f"source={f}", f"batch={args.batch}", f"imgsz={CLASSIFY_SIZE}",
                                 "device=cpu", "save=False", "save_txt=True", f"project={t}",
                                 f"name=yolo-{next(seq)}", "verbose=False"]

        contenders.append(Contender("ultralytics", f"`yolo classify predict` {versions['ultralytics']}, "
                                    f"{THREADS} torch threads", yolo_cmd(THREADS), peers_env))
        if args.ultralytics_default:
            contenders.append(Contender("ultralytics default", "the same with Ultralytics' own thread count "
                                        "(torch threads = cores - 1)", yolo_cmd(0), peers_env))
        contenders.append(Contender(
            "plain loop", "PIL + torchvision transforms, batched, inference_mode",
            lambda f, t: [sys.executable, me, "--child", "plain-classify", str(plain_weights), str(f), str(args.batch),
                          str(CLASSIFY_SIZE)], {**base_env, "PYTHONPATH": ""}))
        small = min(args.batch, args.n)
        results = measure(contenders, (folder(small), folder(args.n)), (small, args.n), args.rounds, tmp, progress)
        sections.append(task_section("classify", f"ResNet-18 at {CLASSIFY_SIZE}, {args.n} JPEGs 640x480, batch {args.batch}",
                                     results, [c.name for c in contenders if c.name.startswith("visiontk")],
                                     ["ultralytics", "ultralytics default", "plain loop"]))

    if "segment" in tasks:
        ckpt = bu.make_checkpoint("segment/shapes-unet", cache / "visiontk-unet-resnet18.pt",
                                  ["model.backbone=resnet18", "model.backbone_options={}",
                                   "model.head.decoder_channels=[256,128,64,32]", "model.head.upsample=transpose",
                                   f"data.image_size={SEGMENT_SIZE}"], classes=CLASSES)
        backends = visiontk_backends("segment", ckpt, requested, base_env, jpegs[0], tmp, notes)
        contenders = [Contender(f"visiontk {b}", f"`visiontk segment predict{' --backend ' + b if extra else ''}`",
                                vtk_cmd("segment", ckpt, extra), base_env) for b, extra in backends]
        smp_weights = cache / "smp-unet-resnet18.pt"
        contenders.append(Contender(
            "smp loop", f"smp {versions['smp']} Unet('resnet18'), PIL + torchvision transforms, batched, PNG masks",
            lambda f, t: [peers_python, me, "--child", "smp-segment", str(smp_weights), str(f), str(args.batch),
                          str(SEGMENT_SIZE), str(t / f"smp-masks-{next(seq)}")], peers_env))
        small = min(args.batch, args.segment_n)
        results = measure(contenders, (folder(small), folder(args.segment_n)), (small, args.segment_n), args.rounds,
                          tmp, progress)
        sections.append(task_section("segment", f"U-Net, ResNet-18 encoder at {SEGMENT_SIZE}x{SEGMENT_SIZE}, "
                                     f"{args.segment_n} JPEGs 640x480, batch {args.batch}, masks at 640x480",
                                     results, [c.name for c in contenders if c.name.startswith("visiontk")],
                                     ["smp loop"]))

    shutil.rmtree(tmp, ignore_errors=True)
    header = [f"# visiontk against its peers, {started}{' (--quick: a smoke run, not numbers)' if args.quick else ''}",
              "",
              f"- CPU: {cpu_header()}",
              f"- torch {torch.__version__} (the peers' venv: torch {versions['torch']}), ultralytics "
              f"{versions['ultralytics']}, segmentation-models-pytorch {versions['smp']}; every process "
              f"OMP_NUM_THREADS={THREADS}; visiontk --precision {args.precision} --workers {THREADS}",
              f"- load average before: {load_before}; after: {bu.load_average()}",
              f"- {args.rounds} interleaved round(s); each contender runs on one batch and on the whole folder per round; "
              "ratios are per round, shown as median (min-max)",
              *[f"- {n}" for n in notes], ""]
    text = "\n".join(header + sections)
    print(text)
    if not args.quick:
        out_dir = HERE / "results"
        out_dir.mkdir(exist_ok=True)
        (out_dir / f"peers-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(text + "\n")
        (out_dir / "peers-latest.md").write_text(text + "\n")
    return 0


def task_section(task: str, what: str, results: dict[str, dict], ours: list[str], peers: list[str]) -> str:
    ok = {k: v for k, v in results.items() if "failed" not in v}
    lines = [f"## {task}: {what}", "", contender_table(ok), ""]
    ours_ok = [n for n in ours if n in ok]
    best = best_backend(ok, ours_ok)
    pairs = [(o, p) for o in ours_ok for p in peers if p in ok]
    if pairs:
        lines += [ratio_table(ok, pairs), ""]
    if best:
        lines += [f"visiontk's best backend here (highest median steady img/s): **{best}**", ""]
    lines += [f"- {k}: failed ({v['failed']})" for k, v in results.items() if "failed" in v]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
