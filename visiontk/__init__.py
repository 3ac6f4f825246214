"""visiontk: train and run CNNs for classification, detection and segmentation."""
import os

# albumentations asks the package index for a newer version on import; this tool
# must never touch the network at run time.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
