"""Running the CLI as a user would: a real process with its own stdin, stdout,
stderr, environment, working directory and exit code.

Starting `python -m visiontk` costs ~5 s of imports on the 2-core machine
(torch 3 s, torchvision 2 s), more than most of the commands the tests run, and
the suite runs ~80 of them. So by default each command runs in a process forked
from a warm one that has imported visiontk's modules once (multiprocessing's
forkserver with preloaded modules): still a separate process with its own
file descriptors, signals and exit code, started in ~0.1 s. The warm process
never runs a torch operation, so nothing of OpenMP's thread pool is inherited.
VISIONTK_TEST_SUBPROCESS=1 runs every command as a fresh `python -m visiontk`
instead.

`start_cli` runs a command in the background, optionally stopping it (SIGSTOP)
at an observable moment -- when it is about to rename a temp file over a given
file for the n-th time -- so the killed-run tests kill exactly there without
any sleep or hook in the product code.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

FRESH_PROCESSES = os.environ.get("VISIONTK_TEST_SUBPROCESS") == "1"
# The training seed of the outcome tests (conftest.py): varied by tests/calibration/run.py.
SEED = int(os.environ.get("VISIONTK_TEST_SEED", "0"))
# What every command is started with: one torch thread (on a busy 2-core machine
# two threads of tiny convolutions spin against each other, ~7x slower), and a
# terminal width that does not cut tables.
BASE_ENV = {"OMP_NUM_THREADS": "1"}
FORCED_ENV = {"NO_ALBUMENTATIONS_UPDATE": "1", "COLUMNS": "200"}
# Imported once by the warm process (the commands import the rest lazily; cli.py imports
# a command group's module when that group runs: they are preloaded here by name).
PRELOAD = ["visiontk", "torch", "torchvision", "visiontk.cli", *(f"visiontk.commands.{m}" for m in (
               "task_commands", "transfer", "misc", "model", "weights", "export", "merge", "report")),
           "visiontk.tasks.options.detect", "visiontk.tasks.options.segment",
           "visiontk.engine.trainer", "visiontk.engine.predictor",
           "visiontk.engine.evaluator", "visiontk.tasks.classify", "visiontk.tasks.detect.task",
           "visiontk.tasks.segment.task", "albumentations", "pycocotools.coco", "cv2", "matplotlib.pyplot"]

_context = None


def _warm_context():
    global _context
    if _context is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([m for m in PRELOAD])
        # The warm process inherits this environment once: rich reads COLUMNS when its
        # consoles are created (at import), so it must hold the tests' width already.
        saved = {k: os.environ.get(k) for k in FORCED_ENV}
        os.environ.update(FORCED_ENV)
        try:
            ctx.Process(target=_noop).start()  # starts the forkserver (and its preloading) now
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        _context = ctx
    return _context


def _noop() -> None:
    pass


def _stop_hook(stop_at: tuple[str, int]):
    """An audit hook that stops this process (SIGSTOP) just before the `count`-th
    rename of a temp file over a file named `name`, after printing a marker line."""
    name, count = stop_at
    seen = [0]

    def hook(event: str, args: tuple) -> None:
        if event == "os.rename" and os.path.basename(str(args[1])) == name:
            seen[0] += 1
            if seen[0] == count:
                sys.stderr.write(f"[test] stopped before renaming {args[0]} -> {args[1]}\n")
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGSTOP)

    return hook


def _child(argv: list[str], env: dict, cwd: str | None, stdin_path: str, out_path: str, err_path: str,
           stop_at: tuple[str, int] | None, umask: int | None = None) -> None:
    """The command in the forked process: set up what a fresh process would have, run, exit."""
    if umask is not None:
        os.umask(umask)
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    for fd, path, flags in ((0, stdin_path, os.O_RDONLY), (1, out_path, os.O_WRONLY), (2, err_path, os.O_WRONLY)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    # multiprocessing replaced stdin with /dev/null; a fresh interpreter reads fd 0.
    sys.stdin = open(0, encoding=sys.__stdout__.encoding, errors=sys.__stdout__.errors, closefd=False)
    sys.stdout = open(1, "w", encoding=sys.__stdout__.encoding, errors=sys.__stdout__.errors, closefd=False)
    sys.stderr = open(2, "w", encoding=sys.__stderr__.encoding, errors="backslashreplace", closefd=False,
                      buffering=1)
    # multiprocessing made the forkserver this process's start method; a fresh
    # interpreter has the platform's default (DataLoader workers fork from it).
    multiprocessing.set_start_method(None, force=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import torch

    # libgomp read OMP_NUM_THREADS when the warm process loaded it; apply this command's.
    threads = env.get("OMP_NUM_THREADS")
    torch.set_num_threads(int(threads) if threads and threads.isdigit() else max(1, os.cpu_count() or 1))
    if stop_at is not None:
        sys.addaudithook(_stop_hook(stop_at))
    sys.argv = ["visiontk", *argv]
    code = 0
    try:
        from visiontk.cli import main

        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if e.code is not None and not isinstance(e.code, int):
            sys.stderr.write(f"{e.code}\n")
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:  # noqa: BLE001 - what the interpreter would print for an uncaught error
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _env(extra: dict | None = None) -> dict:
    return {**BASE_ENV, **os.environ, **(extra or {}), **FORCED_ENV}


@dataclass
class Background:
    """A command started with `start_cli`: its pid, its stderr file, and how it ended."""

    process: object
    stderr_path: Path
    stdout_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        if isinstance(self.process, subprocess.Popen):
            return self.process.poll()
        return None if self.process.is_alive() else self.process.exitcode

    def wait(self, timeout: float = 600) -> int:
        if isinstance(self.process, subprocess.Popen):
            return self.process.wait(timeout=timeout)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
            raise TimeoutError(f"command did not end in {timeout} s:\n{self.stderr}")
        return _returncode(self.process.exitcode)

    def stopped(self) -> bool:
        """True once the process stopped itself (state T in /proc)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")

    def send(self, sig: int) -> None:
        os.kill(self.pid, sig)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def _returncode(exitcode: int) -> int:
    # multiprocessing reports death by signal N as -N, as subprocess does.
    return exitcode


def start_cli(*args: str, log_dir: Path, env: dict | None = None, stop_at: tuple[str, int] | None = None,
              cwd: Path | None = None) -> Background:
    """Start `visiontk ARGS` in the background, stdout and stderr into files in `log_dir`.

    stop_at=(name, n): the process stops itself (SIGSTOP) right before it renames a
    temp file over a file named `name` for the n-th time; `Background.stopped()` says
    when, and the test then kills it or sends a signal and SIGCONT.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    fd, out = tempfile.mkstemp(dir=log_dir, prefix="stdout-", suffix=".log")
    os.close(fd)
    fd, err = tempfile.mkstemp(dir=log_dir, prefix="stderr-", suffix=".log")
    os.close(fd)
    full_env = _env(env)
    argv = [str(a) for a in args]
    if FRESH_PROCESSES:
        code = "import sys, runpy\n"
        if stop_at is not None:
            code += f"from helpers import _stop_hook\nsys.addaudithook(_stop_hook({stop_at!r}))\n"
        code += "sys.argv = ['visiontk', *sys.argv[1:]]\nrunpy.run_module('visiontk', run_name='__main__')\n"
        full_env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), full_env.get("PYTHONPATH", "")])
        with open(out, "w") as o, open(err, "w") as e:
            proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdin=subprocess.DEVNULL, stdout=o, stderr=e,
                                    env=full_env, cwd=cwd)
        return Background(proc, Path(err), Path(out))
    proc = _warm_context().Process(target=_child, args=(argv, full_env, None if cwd is None else str(cwd), os.devnull,
                                                        out, err, stop_at))
    proc.start()
    return Background(proc, Path(err), Path(out))


def run_cli(*args: str, stdin: str | None = None, cwd: Path | None = None, timeout: float = 900,
            env: dict | None = None, umask: int | None = None) -> subprocess.CompletedProcess:
    """Run `visiontk ARGS` to the end: real stdin, stdout, stderr and exit code
    (`umask`: the command's, as a shell's `umask` would set it; default the tests')."""
    argv = [str(a) for a in args]
    full_env = _env(env)
    if FRESH_PROCESSES:
        return subprocess.run([sys.executable, "-m", "visiontk", *argv], input=stdin, capture_output=True, text=True,
                              cwd=cwd, env=full_env, timeout=timeout, umask=-1 if umask is None else umask)
    with tempfile.TemporaryDirectory(prefix="visiontk-cli-") as tmp:
        stdin_path = os.devnull
        if stdin is not None:
            stdin_path = os.path.join(tmp, "stdin")
            with open(stdin_path, "w", encoding=sys.__stdout__.encoding) as f:
                f.write(stdin)
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        open(out, "w").close()
        open(err, "w").close()
        proc = _warm_context().Process(target=_child, args=(argv, full_env, None if cwd is None else str(cwd),
                                                            stdin_path, out, err, None, umask))
        proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            raise subprocess.TimeoutExpired(["visiontk", *argv], timeout)
        with open(out, encoding=sys.__stdout__.encoding) as f:
            stdout = f.read()
        with open(err, encoding=sys.__stdout__.encoding, errors="replace") as f:
            stderr = f.read()
    return subprocess.CompletedProcess(["visiontk", *argv], proc.exitcode, stdout, stderr)


def wait_until(condition, background: Background | None = None, timeout: float = 300, what: str = "") -> None:
    """Poll `condition` until it holds; fail early if the background command ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        if background is not None and background.poll() is not None:
            raise AssertionError(f"command ended (code {background.poll()}) before {what or 'the awaited moment'}:\n"
                                 f"{background.stderr}")
        time.sleep(0.01)
    if background is not None:
        background.send(signal.SIGKILL)
    raise AssertionError(f"timed out waiting for {what or 'a condition'}"
                         + (f":\n{background.stderr}" if background is not None else ""))


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to `n` (and OMP_NUM_THREADS, for the processes
    started meanwhile), restored afterwards."""
    import torch

    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env


def run_warm(target, args_per_process: list[tuple], timeout: float = 300) -> None:
    """`target(*args)` for each args tuple, in processes forked from the warm one and run
    side by side (e.g. the ranks of a process group); fails unless every one exits 0."""
    procs = [_warm_context().Process(target=target, args=args) for args in args_per_process]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout)
    stuck = [proc.pid for proc in procs if proc.exitcode is None]
    for proc in procs:
        if proc.exitcode is None:
            proc.kill()
    assert not stuck, f"processes {stuck} still running after {timeout} s"
    assert [proc.exitcode for proc in procs] == [0] * len(procs)
