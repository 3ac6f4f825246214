"""Loaded at interpreter start when tests/calibration/run.py puts this folder on
PYTHONPATH (never otherwise): applies a kernel setting that has no environment
variable of its own, or a deliberate break of the code, in every process of a
calibration run (pytest, the CLI processes it starts, their workers)."""
import os

if os.environ.get("VISIONTK_CALIBRATE_MKLDNN") == "0":
    import torch

    # oneDNN off: ATen's own convolution kernels instead (another CPU's path).
    torch.backends.mkldnn.enabled = False

if os.environ.get("VISIONTK_BREAK"):
    from breaks import apply

    apply(os.environ["VISIONTK_BREAK"])
