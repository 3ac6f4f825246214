"""Which backend and precision `predict` runs with: `--backend` and `--precision`, auto by measurement.

On the CPU, `auto` does not guess from CPU flags: bf16 was ~1.8x faster than
fp32 on a Xeon with AMX, 0.88x end to end on one with AVX-512 BF16 but no AMX,
and far slower on AVX2-only CPUs (README, "Speed"). So it times a few forward
batches of the real model at the real batch shape for each candidate (torch
fp32 and bf16 under `--precision auto`; onnxruntime and OpenVINO too under
`--backend auto`), after a warm-up of each, in interleaved rounds, and picks the
smallest median: it never picks a setting that measured slower. The choice and
its numbers go to stderr in one line, and into the cache (choices.json, keyed by
the CPU model, thread count, versions, the model's architecture and the batch
shape), so the timing is paid once. An explicit --precision or --backend is
not measured. On CUDA today's rules hold: torch, bf16 autocast where the GPU has
it, else fp16.
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from visiontk.console import info, warn
from visiontk.engine.build import PendingModel, built
from visiontk.engine.cache_dir import cache_dir, read_json
from visiontk.engine.checkpoint import atomic_write_text
from visiontk.engine.device import PRECISIONS, amp_dtype, describe_precision
from visiontk.engine.exported_file import ExportedFile
from visiontk.engine.performance import autocast, prepare_for_inference, to_float32
from visiontk.engine.runtimes import CHOICES, BACKENDS, ExportedModel, can_export_onnx, installed, precisions, require
from visiontk.errors import UserError

# Timed rounds after the warm-up, and the time after which no new round starts:
# the demo models are measured in well under 2 s, a big model in one warm-up and
# one round of each candidate.
ROUNDS = 5
TIME_CAP = 1.5
# A precision this many times slower than its backend's fastest on a batch of 2 is not timed on full batches.
PRUNE = 1.5
# Probes faster than this (seconds) prune nothing: timing such a candidate in full costs little, and one
# short probe under load is noise.
MIN_PRUNED = 0.05
# bf16/fp16 is picked only when at least this much faster than the fastest fp32 candidate.
REDUCED_GAIN = 1.1
# Timed calls shorter than this (seconds, by the warm-up call) are repeated, up to MAX_REPEATS times, per round.
MIN_CALL = 0.02
MAX_REPEATS = 20
CHOICES_FILE = "choices.json"


@dataclass
class Runtime:
    """What the predictor calls: the model (a prepared torch module or an `ExportedModel`) and how it runs."""

    model: Callable
    backend: str
    precision: str  # fp32 | bf16 | fp16
    dtype: torch.dtype | None  # the torch autocast dtype (None: none, and for the other backends)
    channels_last: bool

    def describe(self) -> str:
        if self.backend != "torch":
            return f"{self.backend} {self.precision}"
        return f"{describe_precision(self.dtype)}{', channels_last' if self.channels_last else ''}"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(runners: dict[str, Callable[[], object]], clock: Callable[[], float] = time.perf_counter,
            rounds: int = ROUNDS, time_cap: float = TIME_CAP, probes: dict[str, Callable[[], object]] | None = None,
            prune: float = PRUNE, group: Callable[[str], str] = lambda name: name.split()[0]
            ) -> tuple[str, dict[str, float], dict[str, float]]:
    """(the fastest, {candidate: median seconds of a full batch}, {pruned: seconds of a probe}).

    `probes` (the same candidates on a batch of 2): each runs twice (warm, then
    timed), and a reduced precision more than `prune` times slower than the fastest
    probe of its `group` (the same backend) and slower than MIN_PRUNED is left out, so a setting
    several times slower (bf16 emulated on an AVX2 CPU: 8x on resnet18) costs a
    small batch instead of full ones. Backends are compared on full batches only:
    on 2 images their fixed costs differ (on the segment demo torch took over 2x
    onnxruntime's time for 2 images, 0.65x for 32). Then each runner runs once to
    warm up, then interleaved rounds (one call of each per round, or a few of a
    call shorter than MIN_CALL) until `rounds` or `time_cap`; at least one round.
    A reduced precision wins only when REDUCED_GAIN faster by its median and
    faster than the fastest fp32 in every round."""
    pruned: dict[str, float] = {}
    if probes:
        for run in probes.values():
            run()  # the first call of each (one-time set-up: kernels, weight casts) is not timed
        probe_times = {}
        for name, run in probes.items():
            t0 = clock()
            run()
            probe_times[name] = clock() - t0
        best: dict[str, float] = {}
        for name, t in probe_times.items():
            best[group(name)] = min(t, best.get(group(name), t))
        # fp32 (the reference) is always timed in full, and so is any probe too short to be worth skipping.
        pruned = {name: t for name, t in probe_times.items()
                  if t > prune * best[group(name)] and t > MIN_PRUNED and not name.endswith("fp32")}
        runners = {name: run for name, run in runners.items() if name not in pruned}
    repeats = {}
    for name, run in runners.items():
        t0 = clock()
        run()
        # A call shorter than MIN_CALL (a tiny model at batch 1: a millisecond) is
        # repeated within its round, so one round is not one scheduler tick's noise.
        repeats[name] = max(1, min(MAX_REPEATS, math.ceil(MIN_CALL / max(clock() - t0, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in runners}
    start = clock()
    for _ in range(rounds):
        for name, run in runners.items():
            t0 = clock()
            for _ in range(repeats[name]):
                run()
            times[name].append((clock() - t0) / repeats[name])
        if clock() - start > time_cap:
            break
    import statistics  # only when measuring: most runs read a cached choice

    medians = {name: statistics.median(ts) for name, ts in times.items()}
    exact = {name: t for name, t in medians.items() if name.endswith("fp32")}
    reference = min(exact, key=exact.get) if exact else None

    def clears_the_bar(name: str) -> bool:
        # A reduced precision changes the numbers: it has to be clearly faster (by its
        # median) and faster in every round, not faster by the noise of a busy machine
        # (a tiny model's bf16 won a loaded run by 3%; at batch 1 under a load of 5,
        # emulated bf16 once won by its median).
        if reference is None or name.endswith("fp32"):
            return True
        steady = all(t < r for t, r in zip(times[name], times[reference]))
        return steady and medians[name] * REDUCED_GAIN <= medians[reference]

    # The fastest that clears the bar: a reduced precision that lost one round does not
    # hand the run to fp32 while another one won them all (on an AMX Xeon, OpenVINO bf16
    # at 2.3 ms lost a round, and onnxruntime fp32 at 7.5 ms ran instead of torch bf16 at 5.1).
    pick = next(name for name in sorted(medians, key=medians.get) if clears_the_bar(name))
    return pick, medians, pruned


def model_signature(model: nn.Module | PendingModel | ExportedFile, example: torch.Tensor) -> str:
    """The architecture (the module tree with every layer's sizes; a checkpoint's model
    section and weight shapes when the model is not built; an exported file's path,
    size and time) and the batch shape: what speed depends on."""
    if isinstance(model, ExportedFile):
        stat = model.path.stat()
        text = json.dumps([str(model.path.resolve()), stat.st_size, stat.st_mtime_ns])
    elif isinstance(model, PendingModel):
        text = model.architecture()
    else:
        text = repr(model) + json.dumps(sum(p.numel() for p in model.parameters()))
    text += json.dumps([list(example.shape), str(example.dtype)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _candidates(backend: str, precision: str, exportable: bool, openvino_only: bool = False,
                with_torch: bool = True) -> list[tuple[str, str]]:
    backends = BACKENDS if backend == "auto" else (backend,)
    out = []
    for b in backends:
        if b != "torch" and (not exportable or not installed(b)) or b == "torch" and not with_torch:
            continue
        if openvino_only and b == "onnxruntime":
            if backend != "auto":
                raise UserError("--backend onnxruntime: onnxruntime reads .onnx files, not OpenVINO's .xml")
            continue
        allowed = precisions(b)
        # auto: fp32 and bf16 (fp16 autocast is slow on CPUs: not a candidate unless asked for).
        wanted = [p for p in ("fp32", "bf16") if p in allowed] if precision == "auto" else [precision]
        if backend != "auto" and precision != "auto" and precision not in allowed:
            raise UserError(f"--backend {b} --precision {precision}: {b} runs {' or '.join(allowed)} on this CPU")
        out += [(b, p) for p in wanted if p in allowed]
    return out


def choose_runtime(model: nn.Module | PendingModel | ExportedFile, checkpoint: str | Path | None,
                   device: torch.device, precision: str, backend: str | None, channels_last: bool, compile: bool,
                   example: torch.Tensor | None, needs_torch: str | None = None) -> Runtime:
    """The runtime for `predict`. `example`: a batch of the real shape (None when inputs
    vary in size, e.g. tiles: nothing is measured then, auto is torch fp32).
    `needs_torch`: why the torch model is needed (e.g. "--cam"), refusing other backends.
    A `PendingModel` is built only when torch runs or an export is made."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    file = model if isinstance(model, ExportedFile) else None
    if backend is None:  # the default: torch, or the runtime of an exported file
        backend = "torch" if file is None else "openvino" if file.path.suffix == ".xml" else "onnxruntime"
    if backend not in CHOICES:
        raise UserError(f"--backend {backend!r}: expected one of {', '.join(CHOICES)}")
    if file is not None and backend == "torch":
        raise UserError(f"{file.path}: an exported model runs on --backend onnxruntime, openvino or auto")
    if backend != "torch":
        why = needs_torch or ("--compile" if compile else None) or (None if checkpoint or file else "this model")
        if why and backend != "auto" or why and file:
            raise UserError(f"--backend {backend}: {why} needs the torch backend")
        if device.type != "cpu" and (backend != "auto" or file):
            raise UserError(f"--backend {backend} runs on the CPU; use --device cpu (or --backend torch)")
        if backend != "auto":
            require(backend)
    if file is None and (device.type != "cpu" or backend == "torch" and precision != "auto" or compile):
        # CUDA and MPS keep their rules (bf16/fp16 on CUDA); explicit settings are not measured.
        return _torch(model, device, amp_dtype(device, precision if precision != "auto" or device.type != "cpu"
                                               else "fp32"), channels_last, compile)
    if file is not None:
        candidates = _candidates(backend, precision, True, file.path.suffix == ".xml", with_torch=False)
    else:
        exportable = checkpoint is not None and needs_torch is None and (backend != "auto" or can_export_onnx())
        candidates = _candidates(backend, precision, exportable)
    if not candidates:
        raise UserError(f"--backend {backend} --precision {precision}: no backend here runs it")
    if len(candidates) == 1 or example is None:
        return _build(candidates[0], model, checkpoint, device, channels_last, example)
    key = json.dumps({"cpu": cpu_name(), "threads": torch.get_num_threads(), "versions": _versions(candidates),
                      "model": model_signature(model, example), "candidates": [list(c) for c in candidates]})
    store = cache_dir(CHOICES_FILE)
    cached = read_json(store).get(hashlib.sha256(key.encode()).hexdigest())
    names = {f"{b} {p}": (b, p) for b, p in candidates}
    if cached and cached.get("pick") in names:
        # Said once, when measured; later runs name it in their closing line (Predictor.describe).
        return _build(names[cached["pick"]], model, checkpoint, device, channels_last, example)
    # The exports first (of the plain model), then the torch model in its memory format.
    runtimes = {}
    for name, c in names.items():
        if c[0] == "torch":
            continue
        try:
            runtimes[name] = _build(c, model, checkpoint, device, channels_last, example)
        except Exception as e:  # noqa: BLE001 - a model the exporter or a runtime cannot take
            if backend != "auto" or file is not None:
                raise
            warn(f"--backend auto: {c[0]} left out ({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})")
    names = {name: c for name, c in names.items() if c[0] == "torch" or name in runtimes}
    if len(names) == 1:
        return runtimes.get(next(iter(names))) or _build(next(iter(names.values())), model, checkpoint, device,
                                                         channels_last, example)
    if any(b == "torch" for b, _ in names.values()):
        model = prepare_for_inference(built(model), device, None, channels_last)
        runtimes.update({name: Runtime(model, "torch", p, amp_dtype(device, p), channels_last)
                         for name, (b, p) in names.items() if b == "torch"})
    runtimes = {name: runtimes[name] for name in names}  # in the candidates' order
    probes = {name: _runner(rt, device, example[:2]) for name, rt in runtimes.items()} if len(example) > 2 else None
    started = time.perf_counter()
    pick, medians, pruned = measure({name: _runner(rt, device, example) for name, rt in runtimes.items()},
                                    probes=probes)
    took = time.perf_counter() - started
    ms = {name: round(s * 1000, 2) for name, s in medians.items()}
    probe_ms = {name: round(s * 1000, 2) for name, s in pruned.items()}
    entries = read_json(store)
    entries[hashlib.sha256(key.encode()).hexdigest()] = {"pick": pick, "ms": ms, "pruned_probe_ms": probe_ms,
                                                         "key": json.loads(key),
                                                         "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        atomic_write_text(json.dumps(entries, indent=1) + "\n", store)
    except (OSError, UserError):  # UserError: atomic_write_text's one-line 'cannot write'
        pass  # an unwritable cache costs the measurement again next time, nothing else
    _say(pick, ms, example, f"measured in {took:.1f} s, kept in {store}", probe_ms)
    chosen = runtimes[pick]
    if chosen.backend == "torch" and chosen.dtype is not None:
        # Post-processing reads fp32 (performance.prepare_for_inference does the same).
        chosen.model.register_forward_hook(lambda module, args, output: to_float32(output))
    return chosen


def _versions(candidates: list[tuple[str, str]]) -> dict[str, str]:
    from visiontk.engine.export_cache import package_version

    others = sorted({b for b, _ in candidates} - {"torch"})
    return {"torch": torch.__version__, **{b: package_version(b) for b in others}}


def _say(pick: str, ms: dict[str, float], example: torch.Tensor, where: str, pruned: dict[str, float]) -> None:
    numbers = ", ".join(f"{name} {v:g} ms" for name, v in ms.items())
    slow = "".join(f", {name} > {PRUNE:g}x slower on 2 images ({v:g} ms)" for name, v in pruned.items())
    info(f"auto: {pick} (forward of a {'x'.join(map(str, example.shape))} batch: {numbers}{slow}; {where})")


def _torch(model: nn.Module, device: torch.device, dtype: torch.dtype | None, channels_last: bool,
           compile: bool = False) -> Runtime:
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
    return Runtime(prepare_for_inference(built(model), device, dtype, channels_last, compile), "torch", precision, dtype,
                   channels_last)


def _build(candidate: tuple[str, str], model: nn.Module, checkpoint, device: torch.device, channels_last: bool,
           example: torch.Tensor | None) -> Runtime:
    """The runtime of one (backend, precision)."""
    backend, precision = candidate
    if backend == "torch":
        return _torch(model, device, amp_dtype(device, precision), channels_last)
    if isinstance(model, ExportedFile):
        return Runtime(ExportedModel(backend, model.source, torch.get_num_threads(), precision, model.fixed_batch),
                       backend, precision, None, False)
    from visiontk.engine.export_cache import ExportCache

    exports = ExportCache(checkpoint, model)

    def source(shape: tuple) -> tuple[Path, list[str]]:
        match = example if example is not None and tuple(example.shape[1:]) == shape else None
        return exports.onnx_for(shape, match)

    runtime = ExportedModel(backend, source, torch.get_num_threads(), precision)
    if example is not None:
        runtime._session(tuple(example.shape[1:]))  # exported and loaded now, not in the first batch
    return Runtime(runtime, backend, precision, None, False)


def _runner(runtime: Runtime, device: torch.device, example: torch.Tensor) -> Callable[[], object]:
    x = example.to(device)
    if runtime.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)  # as the predictor's batches are

    def run():
        with torch.inference_mode(), autocast(device, runtime.dtype):
            return runtime.model(x)

    return run
