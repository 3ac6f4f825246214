"""Calibrate the outcome tests: run them under several CPU kernel settings and
seeds, and with deliberate breaks of the code, and print what they measured.

    python tests/calibration/run.py                       # every setting x seeds 0 1 2
    python tests/calibration/run.py --settings default --seeds 0 --breaks
    python tests/calibration/run.py -k detect             # a subset of the outcome tests

Settings make this machine pick other kernels, as another CPU would:
ATEN_CPU_CAPABILITY (ATen's vectorised kernels), ONEDNN_MAX_CPU_ISA (oneDNN's
convolutions), and oneDNN switched off (ATen's own convolutions). Each run is
`pytest -m outcome` with VISIONTK_TEST_SEED and VISIONTK_OUTCOME_LOG set; each
outcome test appends what it measured to the log before asserting. The table
gives, per test and value, the range over seeds under each setting, then
whether each break made the test fail. Results are appended to
tests/calibration/results.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
SETTINGS = {
    "default": {},
    "aten-avx2+onednn-avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "onednn-sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "mkldnn-off": {"VISIONTK_CALIBRATE_MKLDNN": "0"},
}
# Which outcome tests each break must fail (pytest -k expressions).
BREAKS = {
    "classify-shuffled-labels": "test_trains_to_90_percent or test_predict_from_stdin_to_jsonl or test_predict_csv",
    "detect-no-cell-offset": "test_trains_on_shapes or finds_the_shapes or fitting_one_target",
    "fcn-zero-upsampler": "fcn8s_trains or (overfits_one_tiny_image and fcn8s)",
    "unet-no-skips": "test_unet_trains or original_size_masks",
    "segment-labels-shuffled": "overfits_one_tiny_image",
    "pretrained-not-loaded": "speeds_up_another or hymenoptera",
    "bf16-noop": "bf16",
    "kim-order-lost": "kim_cnn_beats_bag_of_words",
    "cam-negated-gradients": "cam_peak_lies",
}


def run(setting: str, seed: int, log: Path, select: str | None, brk: str | None = None) -> dict[str, str]:
    """One pytest run of the outcome tests; returns {test id: passed|failed|skipped}.

    The outcome tests train with one thread (tests/conftest.py), so runs can go side by side."""
    env = {**os.environ, **SETTINGS[setting], "VISIONTK_TEST_SEED": str(seed), "VISIONTK_OUTCOME_LOG": str(log),
           "NO_ALBUMENTATIONS_UPDATE": "1"}
    # This checkout's visiontk, in every process of the run (also when run from another worktree).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE / "site"), str(TESTS.parent), env.get("PYTHONPATH")) if p)
    if brk:
        env["VISIONTK_BREAK"] = brk
    with tempfile.NamedTemporaryFile(suffix=".xml") as junit:
        cmd = [sys.executable, "-m", "pytest", "-q", "-m", "outcome", "-p", "no:cacheprovider",
               f"--junitxml={junit.name}", f"--basetemp={log.with_suffix('')}", str(TESTS)]
        if select:
            cmd += ["-k", select]
        subprocess.run(cmd, cwd=TESTS.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        status = {}
        try:
            root = ET.parse(junit.name).getroot()
        except ET.ParseError:
            return status
        for case in root.iter("testcase"):
            name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
            kinds = {child.tag for child in case}
            status[name] = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        return status


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--breaks", action="store_true", help="also run each break (default setting, first seed)")
    ap.add_argument("--only-breaks", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="pytest runs side by side (each trains on one thread)")
    ap.add_argument("-k", dest="select", default=None, help="pytest -k expression over the outcome tests")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = [s for s in args.settings.split(",") if s]
    results = HERE / "results.jsonl"
    rows: list[dict] = []
    failures: dict[tuple, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [] if args.only_breaks else [(s, seed, None) for s in settings for seed in seeds]
        if args.breaks or args.only_breaks:
            jobs += [(settings[0], seeds[0], b) for b in BREAKS]
        def one(job):
            setting, seed, brk = job
            log = Path(tmp) / f"{setting}-{seed}-{brk}.jsonl"
            log.touch()
            return job, log, run(setting, seed, log, BREAKS[brk] if brk else args.select, brk)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for (setting, seed, brk), log, status in pool.map(one, jobs):
                for line in log.read_text().splitlines():
                    rec = json.loads(line)
                    rec.update(setting=setting, brk=brk)
                    rows.append(rec)
                    with open(results, "a") as f:
                        f.write(json.dumps(rec) + "\n")
                for test, st in status.items():
                    failures[(setting, seed, brk, test)] = st
                print(f"{setting} seed {seed}{f' break {brk}' if brk else ''}: "
                      f"{sum(st == 'passed' for st in status.values())} passed, "
                      f"{sum(st == 'failed' for st in status.values())} failed", flush=True)
    report(rows, failures)


def report(rows: list[dict], status: dict) -> None:
    values = defaultdict(lambda: defaultdict(list))
    for r in rows:
        key = r["test"] if r["brk"] is None else f"{r['test']} [break {r['brk']}]"
        for name, v in r.items():
            if name in ("test", "seed", "setting", "brk"):
                continue
            for sub, x in (v.items() if isinstance(v, dict) else [(None, v)]):
                label = name if sub is None else f"{name}.{sub}"
                values[(key, label)][r["setting"]].append((r["seed"], x))
    for (test, label), by_setting in sorted(values.items()):
        print(f"\n{test}  {label}")
        for setting, pairs in by_setting.items():
            shown = ", ".join(f"s{seed}={_fmt(x)}" for seed, x in sorted(pairs, key=lambda p: p[0]))
            print(f"    {setting:24s} {shown}")
    broken = [(k, st) for k, st in status.items() if k[2] is not None]
    if broken:
        print("\nbreaks:")
        for (setting, seed, brk, test), st in sorted(broken):
            print(f"    {brk:26s} {test}: {'CAUGHT (failed)' if st == 'failed' else 'NOT caught (' + st + ')'}")
    bad = [(k, st) for k, st in status.items() if k[2] is None and st == "failed"]
    if bad:
        print("\nunbroken runs that FAILED:")
        for (setting, seed, _, test), _st in sorted(bad):
            print(f"    {setting} seed {seed}: {test}")


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.3f}"
    if isinstance(x, list):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    return str(x)


if __name__ == "__main__":
    main()
