"""A folder of per-image files named after their image (YOLO txt, drawn images, mask PNGs), and run folders."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from visiontk.errors import UserError

from .output_file import same_file


class OutputFolder:
    """Checked when made, so a bad folder fails before any image is read; created
    at the first file, so a run that fails early leaves nothing behind.

    Never an input: a file is never written over the image it comes from or a
    known input (`refuse_inputs`: a folder that may replace files is neither a
    source folder nor the folder of a source file), and plan.py leaves the
    images of an output folder nested in a source folder out of the inputs.

    Existing files, one policy per command, as its users know it:
    - keep_existing=False (YOLO txt, --save-images): the folder must be empty
      unless --overwrite, which lets files of the same name be replaced; inputs
      of the same name in one run get ``_2``, ``_3``...
    - keep_existing=True (segment masks): nothing is ever replaced; a name on
      disk (an input image in the folder, a mask of an earlier run) or already
      given in this run gets ``-2``, ``-3``...
    """

    def __init__(self, path: str | Path, option: str, overwrite: bool = False, keep_existing: bool = False):
        self.path, self.option, self.keep_existing = Path(path), option, keep_existing
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path}: {option} must be a directory, and this is a file")
        if not keep_existing and not overwrite and self.path.is_dir() and any(self.path.iterdir()):
            raise UserError(f"{self.path}: {option} directory is not empty (use --overwrite to write into it)")
        self.used: set[str] = set()
        # Real paths of known inputs (the checkpoint...) never written over, --overwrite or not.
        self.protected: set[str] = set()

    @property
    def replaces_files(self) -> bool:
        return not self.keep_existing

    def refuse_inputs(self, files: Sequence[Path], folders: Sequence[Path], others: Sequence[Path] = ()) -> None:
        """Before any work: a folder that may replace files is neither a source folder nor the
        folder of a source file (its files are inputs of this run, read before or after
        they would be replaced). A folder that keeps existing files (segment masks) may be
        either: it never replaces anything."""
        self.protected = {os.path.realpath(p) for p in [*files, *others]}
        if not self.replaces_files:
            return
        real = os.path.realpath(self.path)
        for folder in folders:
            if os.path.realpath(folder) == real:
                raise UserError(f"{self.path}: {self.option} is the source folder {folder}; an output folder is never "
                                f"an input, even with --overwrite (choose another directory)")
        for file in files:
            self.refuse_input(file)

    def refuse_input(self, file: str | Path) -> None:
        """An input file in this folder (when it may replace files) is refused."""
        if self.replaces_files and os.path.realpath(os.path.dirname(os.path.abspath(file))) == os.path.realpath(self.path):
            raise UserError(f"{file}: is both an input image and in the {self.option} folder; an output folder is "
                            f"never an input, even with --overwrite (choose another directory)")

    def paths_for(self, source: str | Path, suffixes: Sequence[str]) -> list[Path]:
        """One path per suffix, all with the same free base name: ``<stem><suffix>``, or numbered."""
        if not self.used:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"{self.path}: cannot create the {self.option} directory ({e.strerror or e})") from None
        stem = Path(source).stem or "image"
        n = 1
        while True:
            base = stem if n == 1 else f"{stem}-{n}" if self.keep_existing else f"{stem}_{n}"
            names = [base + suffix for suffix in suffixes]
            taken = any(name in self.used for name in names)
            if self.keep_existing:
                taken = taken or any((self.path / name).exists() for name in names)
            if not taken:
                break
            n += 1
        self.used.update(names)
        paths = [self.path / name for name in names]
        for p in paths:
            if p.exists() and same_file(p, source):
                raise UserError(f"{p}: {self.option} would overwrite the input image; choose another directory")
            if p.exists() and os.path.realpath(p) in self.protected:
                raise UserError(f"{p}: {self.option} would overwrite an input of this run; choose another directory")
        return paths

    def path_for(self, source: str | Path, suffix: str) -> Path:
        return self.paths_for(source, [suffix])[0]


def next_run_dir(project: Path, task: str, name: str) -> Path:
    """runs/<task>/<name>, or <name>-2, -3... when taken: a run never writes into another's folder."""
    base = project / task / name
    if not base.exists():
        return base
    n = 2
    while (project / task / f"{name}-{n}").exists():
        n += 1
    return project / task / f"{name}-{n}"


def refuse_inside_data(folder: str | Path, data_folders: Sequence[str | Path], option: str) -> None:
    """An output folder (a run directory, a plots folder) is never inside a folder of the
    data set that the run walks for its files (`data_folders`: the split folders): its
    files would be read back as data -- a run dir under an ImageFolder split became a
    class named 'classify', eval plots in val/circle became circle images.

    Checked before any work, on real paths (a symlinked --project counts where it
    points). Elsewhere under data.root (runs/ beside train/ and val/, or next to
    COCO files that name their images) nothing is walked, so nothing is refused.
    """
    real = os.path.realpath(folder)
    for data_folder in data_folders:
        if not os.path.isdir(data_folder):
            continue
        root = os.path.realpath(data_folder)
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            raise UserError(f"{folder}: {option} is inside the data folder {data_folder}; its files would be read "
                            f"as data (choose a folder outside it)")


def split_folders(root: str | Path | None, *splits: str) -> list[Path]:
    """root/<split> for each split: the folders a run walks (the others are named by annotations)."""
    return [] if root is None or not os.path.isdir(root) else [Path(root) / s for s in splits]
