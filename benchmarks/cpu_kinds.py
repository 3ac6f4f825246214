"""bf16 against fp32 by kind of CPU: what `--precision bf16` gains, and what `auto` picks.

One CPU can stand in for the kinds below it: oneDNN, which runs torch's CPU
convolutions, uses no instruction set above ONEDNN_MAX_CPU_ISA, and ATen's own
kernels none above ATEN_CPU_CAPABILITY. So on a Xeon with AMX this measures
- AMX: the CPU as it is;
- AVX-512 BF16, no AMX: ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16;
- AVX2 (bf16 emulated): ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2;
each kind the CPU has, in its own process (the variables are read when torch
starts). In each process, fp32 and bf16 (torch autocast, channels_last) take
turns round by round:
- forward: the Predictor's model alone on one decoded, resized batch;
- predict: `Predictor.run` over 640x480 JPEGs (decoding, the model, records);
then `--backend torch --precision auto` measures for itself (a fresh cache),
and its pick is shown with what it measured (median ms per batch; ">x": left
out after a probe on 2 images that took x ms). bf16 is picked only when it
clears auto's bar (1.1x faster by its median and faster in every one of its
rounds), so near 1.1x the pick can go either way from run to run.

    python benchmarks/cpu_kinds.py [--models resnet18,detect-demo] [--rounds 3] [--kinds amx,avx512_bf16,avx2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

# name -> (what it stands for, the CPU flag it needs, the environment that caps the kernels to it)
KINDS = {
    "amx": ("AMX", "amx_bf16", {}),
    "avx512_bf16": ("AVX-512 BF16, no AMX", "avx512_bf16", {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}),
    "avx2": ("AVX2 (bf16 emulated)", "avx2", {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}),
}


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def measure_here(models: list[str], rounds: int) -> dict:
    """In this process (kernels capped by its environment): per model, the rates of fp32 and bf16."""
    import bench_utils as bu
    import predict_bench as pb
    import torch

    from visiontk.engine import runtime_choice as rc
    from visiontk.engine.build import model_from_checkpoint
    from visiontk.data.preprocess import Preprocess

    out = {"environment": bu.environment(), "models": {}}
    with tempfile.TemporaryDirectory(prefix="vtk-kinds-") as tmp:
        os.environ["VISIONTK_CACHE_DIR"] = tmp  # auto measures afresh
        for name in models:
            n = pb.MODELS[name][3]
            paths = bu.make_jpegs(bu.CACHE / "jpeg640x480", max(n, 32), size=(640, 480))[:n]
            benches = {p: pb.Bench(name, p, paths, 32, 2, "alternate", Path(tmp)) for p in ("fp32", "bf16")}
            contenders = {}
            for p, b in benches.items():
                contenders[f"forward {p}"] = b.forward
                contenders[f"predict {p}"] = b.predictor_run
            rates = bu.interleaved(contenders, rounds)
            model, meta = model_from_checkpoint(benches["fp32"].ckpt)
            example = Preprocess.from_checkpoint(meta).example(32, torch.Generator().manual_seed(0))
            store = Path(tmp) / rc.CHOICES_FILE
            before = set(json.loads(store.read_text())) if store.exists() else set()
            picked = rc.choose_runtime(model, benches["fp32"].ckpt, torch.device("cpu"), "auto", "torch", True, False,
                                       example)
            # What auto measured itself (its medians, ms per batch): the pick follows from these, not from the rates above.
            entries = json.loads(store.read_text()) if store.exists() else {}
            new = [e for k, e in entries.items() if k not in before]
            seen = new[0] if new else {}
            measured = {**seen.get("ms", {}), **{k: f">{v}" for k, v in seen.get("pruned_probe_ms", {}).items()}}
            out["models"][name] = {"rates": rates, "auto": picked.precision,
                                   "auto_ms": " / ".join(f"{measured.get(f'torch {p}', '?')}" for p in ("fp32", "bf16"))}
    return out


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,detect-demo")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    if args.child:
        print(json.dumps(measure_here(models, args.rounds)))
        return ""
    import bench_utils as bu

    flags = cpu_flags()
    rows, lines = [], []
    for kind in [k for k in args.kinds.split(",") if k]:
        label, flag, env = KINDS[kind]
        if flag not in flags:
            lines.append(f"- {label}: not measured, this CPU has no {flag}")
            continue
        print(f"cpu kinds: {label}", file=sys.stderr)
        res = subprocess.run([sys.executable, __file__, "--child", "--models", args.models, "--rounds", str(args.rounds)],
                             env={**os.environ, **env}, stdout=subprocess.PIPE, text=True, check=True)
        got = json.loads(res.stdout.strip().splitlines()[-1])
        lines.append(f"- {label} ({' '.join(f'{k}={v}' for k, v in env.items()) or 'no cap'}): {got['environment']}")
        for name, m in got["models"].items():
            r = m["rates"]
            rows.append([label, name,
                         f"{bu.median(r['forward fp32']):.0f} / {bu.median(r['forward bf16']):.0f}",
                         bu.fmt_ratio(bu.ratio_stats(r["forward bf16"], r["forward fp32"])),
                         f"{bu.median(r['predict fp32']):.0f} / {bu.median(r['predict bf16']):.0f}",
                         bu.fmt_ratio(bu.ratio_stats(r["predict bf16"], r["predict fp32"])),
                         f"{m['auto']} ({m['auto_ms']})"])
    text = "\n".join([
        f"### bf16 against fp32 by kind of CPU (batch 32, {args.rounds} interleaved rounds per kind)\n",
        *lines, "",
        bu.markdown_table(["CPU kind", "model", "forward img/s fp32 / bf16", "forward bf16 / fp32",
                           "predict img/s fp32 / bf16", "predict bf16 / fp32",
                           "`--precision auto` picks (its own ms fp32 / bf16)"], rows),
        "", f"load average at end {bu.load_average()}", ""])
    print(text)
    return text


if __name__ == "__main__":
    main()
