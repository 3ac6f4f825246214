"""visiontk: train and run CNNs for classification, detection and segmentation."""
import os

# albumentations asks the package index for a newer version on import; this tool
# must never touch the network at run time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# OpenMP threads (torch's intra-op pool) sleep when idle instead of spinning for
# a while (libgomp's default): on the CPU the predictor alternates decoding
# threads with the model, and spinning OpenMP threads took the cores from the
# decoders (detect demo: 0.82x of the pipeline ceiling passive, 0.63-0.67x
# spinning; benchmarks/README.md). Read when torch loads, so it applies when
# visiontk is imported first (always, for the CLI); an OMP_WAIT_POLICY already
# in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
