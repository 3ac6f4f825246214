"""Training on two "hosts": torchrun with c10d rendezvous in two network namespaces.

The test makes two network namespaces joined by a veth pair, each with its own
private address (and its loopback up), and runs `torchrun --nnodes=2
--nproc_per_node=1 --rdzv-backend=c10d` in each, gloo over the veth: the only
link either namespace has, so the two ranks talk to each other and to nothing
else. Both share this machine's file system, as nodes share a cluster's: the
data set, and the run directory that rank 0 alone writes.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from visiontk.engine.checkpoint import weights_sha256

PORT = 29400  # free in any fresh namespace


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def two_hosts():
    """[(namespace, interface, address)] for hosts A and B; torn down whatever happens."""
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2): cannot make network namespaces")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (`ip netns add`); this test runs as a normal user")
    pid = os.getpid()  # unique names: parallel runs of the suite do not collide
    subnet = f"10.231.{pid % 250}"
    hosts = [(f"vtk{pid}{side}", f"vtk{pid}{side}", f"{subnet}.{n}") for n, side in ((1, "a"), (2, "b"))]
    made: list[str] = []
    try:
        for ns, _, _ in hosts:
            try:
                _ip("netns", "add", ns)
            except subprocess.CalledProcessError as e:
                pytest.skip(f"cannot make a network namespace here: {e.stderr.strip()}")
            made.append(ns)
        (ns_a, if_a, _), (ns_b, if_b, _) = hosts
        _ip("link", "add", if_a, "type", "veth", "peer", "name", if_b)
        for ns, link, address in hosts:
            _ip("link", "set", link, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", link)
            _ip("-n", ns, "link", "set", link, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        for ns, link, _ in hosts:  # nothing but loopback and the pair: no way out of the two hosts
            links = sorted(line.split(":")[1].strip().split("@")[0] for line in _ip("-n", ns, "-o", "link").stdout.splitlines())
            assert links == sorted(["lo", link]), links
        yield hosts
    finally:
        for ns in made:  # deleting a namespace deletes the veth end in it, and so the pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", hosts[0][1]], capture_output=True)  # if it never moved


def _torchrun_on_both(hosts, args: list[str], cwd: Path) -> list[subprocess.CompletedProcess]:
    """`torchrun ... -m visiontk ARGS` on host A (rendezvous host) and host B at once.

    The c10d rendezvous numbers nodes in the order of their addresses (--local-addr):
    A (.1) is node 0 and holds global rank 0."""
    endpoint = f"{hosts[0][2]}:{PORT}"
    procs = []
    for node, (ns, link, address) in enumerate(hosts):
        env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1",
               # gloo's address is that of this host's link (the hostname resolves outside the namespace).
               "GLOO_SOCKET_IFNAME": link, "VISIONTK_LOG_WEIGHTS_SHA256": "1"}
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
               "--nproc_per_node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
               f"--rdzv-id=vtk{os.getpid()}", f"--rdzv-conf=is_host={int(node == 0)}", f"--local-addr={address}",
               "--max-restarts=0", "-m", "visiontk", *args]
        procs.append(subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return done


def _checksums(result: subprocess.CompletedProcess, rank: int) -> list[str]:
    lines = [line for line in result.stderr.splitlines() if "weights sha256" in line]
    assert len(lines) == 1 and lines[0].startswith(f"rank {rank}/2 (node {rank}) "), result.stderr[-3000:]
    return lines[0].split()[-1]


def _log(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if not line.startswith("[W")]


def test_two_nodes_train_and_resume_with_torchrun(two_hosts, tmp_path):
    from visiontk.data.synth import synth_classify

    synth_classify(tmp_path / "data", n=40, size=16, seed=4)
    train = ["classify", "train", "classify/shapes", "--set", "data.root=data", "--set", "data.image_size=16",
             "--set", "train.epochs=2", "--set", "train.batch_size=8", "--set", "model.backbone_options.width=4",
             "--set", "output.plots=false", "--device", "cpu", "--project", "runs", "--name", "mn"]
    a, b = _torchrun_on_both(two_hosts, train, tmp_path)
    print("\n".join(["== node A", *_log(a), "== node B", *_log(b)]))
    assert (a.returncode, b.returncode) == (0, 0), a.stderr[-3000:] + b.stderr[-3000:]
    assert "device cpu x2" in a.stderr and "epoch 2/2" in a.stderr
    assert "epoch" not in b.stderr and "run dir" not in b.stderr  # rank 1 trains and says nothing
    # One run directory, rank 0's.
    run = tmp_path / "runs" / "classify" / "mn"
    assert sorted(p.name for p in (tmp_path / "runs" / "classify").iterdir()) == ["mn"]
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "last.pt", "per_class.csv", "recipe.yaml", "report.html", "results.csv", "run_info.json", "val_metrics.json"]
    # Both ranks end with the same weights, BatchNorm statistics included: those in last.pt.
    saved = weights_sha256(torch.load(run / "last.pt", weights_only=True)["model"])
    assert _checksums(a, 0) == _checksums(b, 1) == saved

    # --resume across the same two nodes: the run goes on in its own directory.
    a, b = _torchrun_on_both(two_hosts, ["classify", "train", "classify/shapes", "--set", "data.root=data",
                                          "--resume", "runs/classify/mn/last.pt", "--set", "train.epochs=3",
                                          "--device", "cpu"], tmp_path)
    print("\n".join(["== node A (resumed)", *_log(a), "== node B (resumed)", *_log(b)]))
    assert (a.returncode, b.returncode) == (0, 0), a.stderr[-3000:] + b.stderr[-3000:]
    assert "train.epochs 2 -> 3" in a.stderr and "epoch 3/3" in a.stderr and "epoch 1/" not in a.stderr
    assert sorted(p.name for p in (tmp_path / "runs" / "classify").iterdir()) == ["mn"]
    assert [row["epoch"] for row in csv.DictReader((run / "results.csv").open())] == ["1", "2", "3"]
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 3 and weights_sha256(ckpt["model"]) != saved
    assert _checksums(a, 0) == _checksums(b, 1) == weights_sha256(ckpt["model"])
