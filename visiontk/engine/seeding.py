"""Seeding every source of randomness a run has, so epochs are reproducible.

albumentations keeps its own random state inside each Compose (global seeds do
not reach it), and every DataLoader worker gets a copy of that state; both are
re-seeded here, from the epoch seed and from torch's per-worker seed.
"""
from __future__ import annotations

import random

import albumentations as A
import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def reseed_augmentations(dataset, seed: int) -> None:
    for value in vars(dataset).values():
        if isinstance(value, A.BaseCompose):
            value.set_random_seed(seed % 2**32)


def worker_init(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    # torch gives each worker base_seed + worker_id, and base_seed comes from the
    # loader's generator, which the trainer seeds per epoch.
    seed = info.seed % 2**32
    random.seed(seed)
    np.random.seed(seed)
    reseed_augmentations(info.dataset, seed)
