"""ImageFolder classification data: root/<split>/<class>/<image>."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from visiontk.console import warn
from visiontk.data.images import is_image_file
from visiontk.data.preprocess import Preprocess
from visiontk.data.regular_files import walk_files
from visiontk.errors import DataError, UserError
from visiontk.recipe import EmptySection, register_format_options


class ImageFolderOptions(EmptySection):
    """data.options of the imagefolder format: none (an image's class is its folder's name)."""


register_format_options("imagefolder", ImageFolderOptions)


def scan_imagefolder(split_dir: Path, classes: list[str] | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    if not split_dir.is_dir():
        raise UserError(f"{split_dir}: data folder does not exist")
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
        if not classes:
            raise UserError(f"{split_dir}: no class folders (expected {split_dir}/<class>/<image>)")
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            warn(f"{split_dir}: folders not in the class list are ignored: {', '.join(extra)}")
    samples: list[tuple[Path, int]] = []
    for idx, name in enumerate(classes):
        folder = split_dir / name
        files = sorted(walk_files(folder, is_image_file)) if folder.is_dir() else []
        if not files:
            warn(f"{folder}: class '{name}' has no images")
        samples.extend((p, idx) for p in files)
    if not samples:
        raise UserError(f"{split_dir}: data set is empty (no images in any class folder)")
    return samples, classes


class ClassificationDataset(Dataset):
    """Yields (image tensor, label); an unreadable image yields None (skipped by collate).

    decode -> `augment` (training) -> resize and normalise, all but the
    augmentations by `preprocess`, exactly as `predict` does it.
    """

    def __init__(self, samples, preprocess: Preprocess, augment: list | None = None, policy: str = "skip"):
        self.samples = samples
        self.preprocess, self.policy = preprocess, policy
        if augment:
            import albumentations as A  # training only: predict never loads it

            self.augment = A.Compose(augment)
        else:
            self.augment = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        try:
            image, _ = self.preprocess.decode(path)
        except DataError as e:
            if self.policy == "error":
                raise
            warn(f"{e} (skipped)")
            return None
        if self.augment is not None:
            image = self.augment(image=image)["image"]
        return self.preprocess.normalize(self.preprocess.finish(image)), label


class ImageModality:
    """Images (data/modality.py): ImageFolder trees for classification, `Preprocess` for the pixels."""

    name = "image"
    preprocess_type = Preprocess
    synthetic_set = "shapes"

    def recipe_preprocess(self, recipe, mean: list[float], std: list[float]) -> Preprocess:
        return Preprocess(size=recipe.image_size, channels=recipe.model.in_channels, mean=mean, std=std,
                          resize=recipe.data.resize, jpeg_draft=recipe.data.jpeg_draft)

    def has_training_data(self, recipe) -> bool:
        return (Path(recipe.data.root) / recipe.data.train).is_dir()

    def synthesize(self, root: Path, synthetic) -> None:
        from visiontk.data.synth import synth_classify

        synth_classify(root, n=synthetic.n, size=synthetic.size, seed=synthetic.seed)

    def classification_data(self, recipe, split: str, train: bool, classes, root, preprocess: Preprocess,
                            augment: list) -> tuple[Dataset, list[str]]:
        data = recipe.data
        split_dir = Path(root or data.root) / (getattr(data, split) if split in ("train", "val") else split)
        samples, classes = scan_imagefolder(split_dir, classes or data.classes)
        return ClassificationDataset(samples, preprocess, augment, data.bad_annotations), classes


MODALITY = ImageModality()
