"""visiontk: train and run CNNs for classification, detection and segmentation."""
import os

# albumentations asks the package index for a newer version on import; this tool
# must never touch the network at run time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# OpenMP threads (torch's intra-op pool) sleep when idle instead of spinning for
# a while (libgomp's default): on the CPU the predictor alternates decoding
# threads with the model, and spinning OpenMP threads took the cores from the
# decoders: 0.75x of the pipeline ceiling with spinning, 0.93-0.95x without
# (benchmarks/README.md); training speed is unchanged. Read when torch loads,
# so it applies when visiontk is imported first (always, for the CLI).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
